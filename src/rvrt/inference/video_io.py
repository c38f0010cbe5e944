"""Streaming input and output of real footage: video files, folders of frames and glob patterns.

Reading (:func:`open_reader`, :func:`probe`):

* a video file in any container/codec FFmpeg (PyAV) decodes; frames come out as ``(H, W, 3)`` RGB,
  uint8 for 8-bit sources, uint16 (0..65535) for deeper ones (``yuv420p10le``, ``p010``, ...).
  YUV is converted with the matrix and range the stream is tagged with; an untagged stream is
  read the way players show it (BT.709 for HD sizes, BT.601 below). swscale runs with accurate
  rounding and full chroma interpolation (its fast default path darkens every channel by about
  1.5 levels), and its 16-bit scale (white = 65283) is corrected, so white is 65535. A display
  rotation (phone footage) is applied, so frames are upright. ``probe`` decodes the first frame
  only; ``frame_count`` of a video is read from the headers (an estimate in some containers).
* a folder of images (png, jpg/jpeg, tif/tiff, bmp, webp) or a glob pattern (``"dir/*.png"``),
  naturally sorted (``frame2`` before ``frame10``); 16-bit PNG/TIFF are read as uint16.
* grayscale is expanded to RGB and alpha is dropped; both are noted in
  :attr:`MediaInfo.channels_note` and logged once.

Writing (:func:`open_writer`):

* a destination ending in ``.mp4 .mkv .mov .avi .webm .gif`` is a video. Defaults: libx264
  ``yuv420p`` crf 18 (mp4/mkv/mov/avi), libvpx-vp9 crf 20 (webm), a per-frame palette (gif).
  Frame rate, colour tags, audio and subtitle streams (packets copied, not re-encoded) come from
  the input video; a partial restore keeps only the audio of the frames written. Colour tags
  are always written (BT.709 for frames folders, the assumed matrix for untagged videos) and the
  RGB -> YUV conversion uses them. For H.264/HEVC/MPEG-4 the chroma is subsampled co-sited
  (left), as their decoders assume. The file is written under a hidden temporary name in the
  destination folder and renamed into place by ``close()``; ``abort()`` deletes it.
* Odd sizes with a chroma-subsampled pixel format (``yuv420p`` needs even width and height):
  the last column/row is repeated to reach an even size, and this is logged. Repeating one
  line is invisible, whereas ``yuv444p`` (which would allow odd sizes) does not play in
  browsers or QuickTime.
* any other destination is a folder of PNG frames (8 or 16-bit RGB), named like the input
  frames, each written atomically (temporary file + ``os.replace``). An existing non-empty
  folder is refused unless ``overwrite`` (its PNG files are deleted first) or ``resume``.
  ``abort()`` keeps the finished frames (each one is complete) and removes partial ones.

Resuming into a frames folder (``resume=True``): ``writer.completed`` is the number of finished
PNG frames already in the folder; they must be the first ``completed`` frames of the input (this
is checked). The caller then reads the input from there and writes the rest::

    info = probe(src)
    with open_writer(dst, like=info, width=..., height=..., resume=True) as writer:
        with open_reader(src, start=writer.completed) as reader:
            for frame in reader:
                writer.write(restore(frame.data), name=frame.name)

A video output cannot be resumed. It is always constant frame rate (a variable-rate source is
written at its average rate); ``open_reader(start=n)`` on a video decodes and drops the first n
frames, since seeking is not frame-exact.
"""

from __future__ import annotations

from rvrt.inference.image_io import IMAGE_EXTENSIONS, natural_key
from rvrt.inference.media import DEFAULT_FPS, VIDEO_EXTENSIONS, Frame, FrameReader, FrameWriter, MediaInfo
from rvrt.inference.readers import open_reader, probe
from rvrt.inference.writers import open_writer

__all__ = [
    "MediaInfo",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "probe",
    "open_reader",
    "open_writer",
    "natural_key",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "DEFAULT_FPS",
]
