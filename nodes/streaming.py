"""Streaming decode for the sampler and extender: each committed chunk is decoded at once with the host's VAE
(dsa_core.streaming_decode carries the causal cache), its frames go to the GUI as small previews, and the whole
video comes out as an IMAGE, so a graph needs no separate VAE Decode.

The decoder's cache travels in the DSA_STATE (``StateBundle.decoded``), so an extender continuing a state keeps
decoding where the sampler stopped. The bundle is a cached node output: nothing here writes into it; a continuation
starts from a copy (DecodeState is immutable) and makes a new one.

Frame grouping follows the host's own VAE Decode (dsa_core.streaming_decode): on hosts that decode latent frames in
pairs (newer than 0.3.x) a chunk's odd last latent frame waits for the next chunk. The run's last chunk flushes it,
so the images output always holds every frame, equal to VAE Decode of the node's whole latent; the DSA_STATE keeps
the decode from before that flush, and its images' last frames (those past ``DecodeState.video_frames``) are
provisional: an extender continuing the state decodes that latent frame again paired with its next one and
replaces them, so its whole-video images equal VAE Decode of the whole extended latent.

Live frames: one ``dsa.frames`` event per decoded piece, ``{node, chunk, frame_start, frames, frame_rate,
total_frames, width, height, first_frame_s, elapsed_s}``; ``frame_start`` is the video index of ``frames[0]``, and a
node's events are contiguous (each starts where the previous ended). ``chunk`` is the number of the chunk whose
commit produced the frames (None for catching up on frames decoded before the run's first chunk). On pairing hosts a
chunk's event may start with the last frames of the previous chunk's latent (delivered one chunk late) and omit its
own held-back frame; a chunk that only holds a frame back sends no event; the last chunk's event includes the
flushed frames. On hosts decoding one frame per call, each chunk's event has exactly that chunk's frames.
"""

from __future__ import annotations

import base64
import io as _io
import time
import weakref
from dataclasses import dataclass

import comfy.model_management
import torch
from torch import Tensor

from ..dsa_core.streaming_decode import CausalMemBlockDecoder, CausalWanDecoder, DecodeState, FrameBuffer
from .host_model import DSAInputError
from .toy_vae import ToyVAE

FRAMES_EVENT = "dsa.frames"
PREVIEW_MAX_SIDE = 256  # preview frames sent to the browser are downscaled to this (bounded websocket traffic)
PREVIEW_QUALITY = 80  # JPEG quality of the previews
WAN_FRAME_RATE = 16  # Wan 2.1 is trained on 16 fps video: the live player plays at this rate


@dataclass
class DecodedVideo:
    """What a DSA_STATE carries of its decode: the decoder state before the run's end flush (a latent frame may be
    held back in it) and every frame of the video, the flushed ones last (provisional: past state.video_frames)."""

    state: DecodeState  # cached tensors on the host's intermediate device
    images: Tensor  # [B, T, H, W, 3] in [0, 1], intermediate device


def wan_decoder(vae) -> CausalWanDecoder:
    """dsa_core's streaming decoder over the host VAE's own Wan 2.1 module (weights stay the host's)."""
    fsm = getattr(vae, "first_stage_model", None)
    if fsm is None or type(fsm).__module__ != "comfy.ldm.wan.vae" or not hasattr(fsm, "decoder"):
        kind = type(fsm).__module__ + "." + type(fsm).__name__ if fsm is not None else type(vae).__name__
        raise DSAInputError(
            f"this VAE ({kind}) is not the Wan 2.1 VAE: connect wan_2.1_vae.safetensors from Load "
            "VAE, or a Wan 2.1 tiny VAE (taew2_1, lighttaew2_1) for a fast live view (DSA models use Wan 2.1's "
            "16-channel latent; the toy model uses DSA Toy VAE), or disconnect vae and decode with VAE Decode"
            + (
                ""
                if host_has_tiny_vae()
                else ". This ComfyUI has no tiny video autoencoders (no comfy/taesd/taehv.py): update ComfyUI to "
                "stream through taew2_1 / lighttaew2_1"
            )
        )
    import comfy.ldm.wan.vae as wan_vae

    # the host's own frame grouping and cache-slot count (one frame per call until 0.3.x, pairs after)
    return CausalWanDecoder.for_host(wan_vae, fsm, device=vae.device, dtype=vae.vae_dtype, source=weakref.ref(fsm))


TINY_VAE_MODULE = "comfy.taesd.taehv"  # the host's TAEHV family (taew2_1, lighttaew2_1): comfy/taesd/taehv.py
WAN21_LATENT_CHANNELS = 16


def host_has_tiny_vae() -> bool:
    """Whether this ComfyUI can load the tiny video autoencoders (its comfy/taesd/taehv.py)."""
    import importlib.util

    try:
        return importlib.util.find_spec(TINY_VAE_MODULE) is not None
    except ImportError:
        return False


def tiny_decoder(vae) -> CausalMemBlockDecoder:
    """dsa_core's streaming decoder over a host TAEHV-family VAE (taew2_1, lighttaew2_1): its memory per block
    carried across chunks; its latent scaling (``process_in``) and output handling (``process_output``) the
    host's, so the frames are the host's VAE Decode's."""
    fsm = vae.first_stage_model
    if fsm.latent_channels != WAN21_LATENT_CHANNELS:
        raise DSAInputError(
            f"this tiny VAE decodes {fsm.latent_channels}-channel latents, not Wan 2.1's 16: connect a Wan 2.1 tiny "
            "VAE (taew2_1 or lighttaew2_1 from Load VAE) or the Wan 2.1 VAE"
        )

    def to_frames(out: Tensor) -> Tensor:
        return vae.process_output(out.float()).movedim(1, -1)

    return CausalMemBlockDecoder(
        fsm,
        device=vae.device,
        dtype=vae.vae_dtype,
        process_in=fsm.process_in,
        to_frames=to_frames,
        source=weakref.ref(fsm),
    )


def decoder_for(vae):
    if isinstance(vae, ToyVAE):
        return vae.streaming_decoder()
    fsm = getattr(vae, "first_stage_model", None)
    if fsm is not None and type(fsm).__module__ == TINY_VAE_MODULE:
        return tiny_decoder(vae)
    return wan_decoder(vae)


def _same_source(state: DecodeState, decoder) -> bool:
    a, b = state.source, decoder.source
    if isinstance(a, weakref.ref) and isinstance(b, weakref.ref):
        return a() is not None and a() is b()
    return a is not None and a == b


class ChunkStream:
    """One node run's streaming decode. ``t_start``: the node's start (perf_counter), for time to first frame."""

    def __init__(
        self,
        *,
        node_id,
        vae,
        latent_format,
        server,
        t_start: float,
        total_latent_frames: int | None,
        resume: DecodedVideo | None = None,
        frame_rate: float | None = None,
        capacity_latent_frames: int | None = None,
    ):
        """``total_latent_frames``: the video's length, where the run ends (None: open-ended, a live run, which
        calls ``end``); ``capacity_latent_frames``: what the frame buffer is first sized for (default the total)."""
        self.vae, self.decoder = vae, decoder_for(vae)
        self.node_id, self.fmt, self.server, self.t_start = node_id, latent_format, server, t_start
        self.out_device = comfy.model_management.intermediate_device()
        self.frame_rate = frame_rate or getattr(vae, "frame_rate", WAN_FRAME_RATE)
        self.state = self.decoder.start()
        self.total_latent_frames = total_latent_frames
        capacity = capacity_latent_frames or total_latent_frames or 0
        self.images = FrameBuffer(self.decoder.video_frames(capacity, self.state), self.out_device)
        self.first_frame_s = None
        self.last_frame_s = None
        self.new_frames = 0
        self.decode_s = 0.0
        self.preview_s = 0.0
        if resume is not None and _same_source(resume.state, self.decoder):
            self.state = resume.state.to(self.decoder.device)
            # frames past the state's count came from flushing a held-back frame: provisional, decoded again here
            self.images.append(resume.images[:, : resume.state.video_frames])

    @property
    def latent_frames(self) -> int:
        return self.state.latent_frames

    def catch_up(self, latents: Tensor, chunk_frames: int) -> None:
        """Decode committed frames [B, C, T, h, w] (model space) this stream has not decoded yet: a state made
        without a VAE, with another VAE, or a latent being continued. In chunk-sized pieces (bounded memory)."""
        for s in range(self.latent_frames, latents.shape[2], chunk_frames):
            self._decode(latents[:, :, s : s + chunk_frames], chunk=None)

    def add_chunk(self, latent: Tensor, chunk_number: int) -> None:
        self._decode(latent, chunk=chunk_number)

    def _load(self, latent: Tensor) -> None:
        patcher = getattr(self.vae, "patcher", None)
        if patcher is not None:
            need = self.vae.memory_used_decode(latent.shape, self.vae.vae_dtype)
            comfy.model_management.load_models_gpu([patcher], memory_required=need)

    def _decode(self, latent: Tensor, chunk: int | None) -> None:
        raw = self.fmt.process_out(latent.float())
        self._load(raw)
        t = time.perf_counter()
        frames, self.state = self.decoder.decode(self.state, raw)
        if self.total_latent_frames is not None and self.state.latent_frames >= self.total_latent_frames:
            # the run's end: a held-back frame is decoded alone for this run's images; self.state (what the
            # DSA_STATE keeps) stays from before, so a continuation pairs that frame with its next one
            tail, _ = self.decoder.flush(self.state)
            if tail is not None:
                frames = torch.cat([frames, tail], 1)
        self._emit(frames, chunk, t)

    def end(self, chunk: int | None) -> None:
        """An open-ended run's end (a live run stopped): the frame a pairing host holds back decoded alone, as a
        planned run's last chunk does; ``self.state`` stays from before that flush (a continuation pairs it)."""
        t = time.perf_counter()
        tail, _ = self.decoder.flush(self.state)
        if tail is not None:
            self._emit(tail, chunk, t)

    def _emit(self, frames: Tensor, chunk: int | None, t: float) -> None:
        frames = frames.to(self.out_device)
        now = time.perf_counter()
        self.decode_s += now - t
        if frames.shape[1] == 0:  # the chunk's only frame is held back for the next chunk
            return
        start = self.images.count
        self.images.append(frames)
        if chunk is not None:
            self.new_frames += frames.shape[1]
            self.last_frame_s = now - self.t_start
            if self.first_frame_s is None:
                self.first_frame_s = self.last_frame_s
        t = time.perf_counter()
        self._send(frames, start, chunk)
        self.preview_s += time.perf_counter() - t

    def _send(self, frames: Tensor, start: int, chunk: int | None) -> None:
        if self.server is None:
            return
        first_total = self.decoder.video_frames(self.total_latent_frames or 0, DecodeState())
        self.server.send_sync(
            FRAMES_EVENT,
            {
                "node": self.node_id,
                "chunk": chunk,
                "frame_start": start,
                "frames": preview_images(frames[0]),
                "frame_rate": self.frame_rate,
                "total_frames": first_total,
                "width": frames.shape[3],
                "height": frames.shape[2],
                "first_frame_s": self.first_frame_s,
                "elapsed_s": time.perf_counter() - self.t_start,
            },
            self.server.client_id,
        )

    def stats(self) -> dict:
        span = self.last_frame_s or 0.0
        return {
            "first_frame_s": self.first_frame_s,
            "new_video_frames": self.new_frames,
            "video_frames": self.images.count,
            "decoded_fps": self.new_frames / span if span else None,
            "decode_s": self.decode_s,
            "preview_s": self.preview_s,
            "frame_rate": self.frame_rate,
            "decoder_cache_mib": self.state.nbytes / 2**20,
        }

    def finish(self, report: dict) -> DecodedVideo:
        """Adds the streaming figures to ``report``; returns what the new DSA_STATE carries."""
        st = self.stats()
        report["streaming"] = st
        if st["first_frame_s"] is not None:
            report["summary"] = (
                report.get("summary", "") + f"; first frame after {st['first_frame_s']:.2f} s, "
                f"{st['decoded_fps']:.1f} decoded frames/s"
            )
        return DecodedVideo(self.state.to(self.out_device), self.images.frames)


def open_stream(
    vae, *, node_id, model, server, t_start, bundle=None, context_latents=None, new_frames: int, chunk_frames: int
) -> ChunkStream | None:
    """A ChunkStream caught up with what the run continues (a state's frames, or a latent's), or None without a
    VAE. Called after the model is loaded, before the first chunk."""
    if vae is None:
        return None
    prior = bundle.state.frames if bundle is not None else (0 if context_latents is None else context_latents.shape[2])
    resume = getattr(bundle, "decoded", None) if bundle is not None else None
    if resume is not None and resume.state.latent_frames != bundle.state.frames:
        resume = None
    stream = ChunkStream(
        node_id=node_id,
        vae=vae,
        latent_format=model.model.latent_format,
        server=server,
        t_start=t_start,
        total_latent_frames=prior + new_frames,
        resume=resume,
    )
    # Frames the stream has not decoded yet (none when it resumed the state's own decode): a state made without a
    # VAE or with another one, or a latent being continued.
    if bundle is not None:
        stream.catch_up(bundle.state.latents, bundle.state.chunk_frames)
    elif context_latents is not None:
        stream.catch_up(context_latents, chunk_frames)
    return stream


def check_images_wanted(vae, prompt, node_id, outputs: list) -> None:
    """Before sampling: a graph that uses the images output without a VAE gets one clear error, not a crash
    downstream after the whole run. ``outputs``: the node's output list (the images output is found by name)."""
    index = [o.display_name for o in outputs].index("images")
    if vae is None and _output_linked(prompt, node_id, index):
        raise DSAInputError(
            "the images output needs a VAE: connect the Wan 2.1 VAE (Load VAE) to this node's vae "
            "input (DSA Toy VAE for the toy model), or decode the latent with VAE Decode"
        )


def images_output(decoded: DecodedVideo | None) -> Tensor | None:
    """The IMAGE output ([B*T, H, W, 3], the host's video-as-images layout), or None when no VAE was connected."""
    if decoded is None:
        return None
    return decoded.images.reshape(-1, *decoded.images.shape[2:])


def _output_linked(prompt, node_id, index: int) -> bool:
    for node in (prompt or {}).values():
        for value in node.get("inputs", {}).values():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == str(node_id) and value[1] == index:
                return True
    return False


def preview_images(frames: Tensor) -> list[str]:
    """[T, H, W, 3] in [0, 1] -> JPEG data URLs no larger than PREVIEW_MAX_SIDE (what the live player shows)."""
    from PIL import Image

    t, h, w, _ = frames.shape
    scale = min(1.0, PREVIEW_MAX_SIDE / max(h, w))
    x = frames.movedim(-1, 1).float()
    if scale < 1.0:
        x = torch.nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    arr = (x.clamp(0, 1) * 255.0).round().to(torch.uint8).movedim(1, -1).cpu().numpy()
    urls = []
    for a in arr:
        buf = _io.BytesIO()
        Image.fromarray(a).save(buf, format="JPEG", quality=PREVIEW_QUALITY)
        urls.append("data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"))
    return urls
