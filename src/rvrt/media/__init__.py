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

* a destination ending in ``.mp4 .mkv .mov .avi .webm .gif`` is a video; a folder path (an
  existing folder, a name without extension, or one ending in ``/``) is a folder of PNG frames;
  anything else is an error (:func:`output_kind`), so ``out.xyz`` never silently becomes a folder.
* videos: defaults libx264 ``yuv420p`` crf 18 (mp4/mkv/mov/avi), libvpx-vp9 crf 20 (webm), a
  per-frame palette (gif); crf and preset are checked against the encoder's range. Frame rate,
  colour tags, audio and subtitle streams (packets copied, not re-encoded, :mod:`.copy`) come
  from the input video; a partial restore keeps only the audio of the frames written. Colour tags
  are always written (BT.709 for frames folders, the assumed matrix for untagged videos) and the
  RGB -> YUV conversion uses them. For H.264/HEVC/MPEG-4 the chroma is subsampled co-sited
  (left), as their decoders assume. The file is written under a hidden temporary name in the
  destination folder and moved into place by ``close()``, which never replaces a file that
  appeared meanwhile unless ``overwrite``; ``abort()`` deletes it. Long runs write videos in
  segments that are joined at the end (:mod:`.segments`), so an interrupted run can resume.
* Odd sizes with a chroma-subsampled pixel format (``yuv420p`` needs even width and height):
  the last column/row is repeated to reach an even size, and this is logged. Repeating one
  line is invisible, whereas ``yuv444p`` (which would allow odd sizes) does not play in
  browsers or QuickTime.
* frames folders: PNG frames (8 or 16-bit RGB), named like the input frames, each written
  atomically. An existing non-empty folder is refused unless ``overwrite``; what an interrupted
  run left, and what ``--overwrite`` may remove, is the business of :mod:`rvrt.inference.outputs`.
  ``abort()`` keeps the finished frames (each one is complete).

Videos are written at a constant frame rate (a variable-rate source is written at its average
rate); ``open_reader(start=n)`` on a video decodes and drops the first n frames, since seeking is
not frame-exact. :func:`check_length` counts the packets of a video against what its container
states, to catch truncated files before hours of work.
"""

from __future__ import annotations

from rvrt.media import pipes  # noqa: E402,F401  (registers "-", stdin, with probe and open_reader)
from rvrt.media.images import IMAGE_EXTENSIONS, natural_key
from rvrt.media.info import DEFAULT_FPS, VIDEO_EXTENSIONS, Frame, FrameReader, FrameWriter, MediaInfo
from rvrt.media.readers import VideoLength, check_length, open_reader, probe
from rvrt.media.writers import open_writer, output_kind

__all__ = [
    "MediaInfo",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "probe",
    "open_reader",
    "open_writer",
    "output_kind",
    "check_length",
    "VideoLength",
    "natural_key",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "DEFAULT_FPS",
]
