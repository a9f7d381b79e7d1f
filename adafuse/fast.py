"""The fast decode path: a static KV cache and CUDA graphs for Llama-family and Gemma-3 models
(gpt-fast style).

On a GPU an 8B model's 1-token forward through transformers' eager code costs 20-35 ms of Python
and kernel launches while reading its weights takes ~3.4 ms. This module runs the same weights
through a lean forward of its own over a preallocated KV buffer, with the elementwise ops fused by
torch.compile, and captures every forward of up to 64 tokens (decode steps, branch steps, scoring)
as a CUDA graph per batch-row slot and token bucket, so each is one graph replay. The prefill runs
the same code eagerly. docs/PERFORMANCE.md has the measurements.

The engine's cache operations (kv.py) map onto the buffer without copying much:
  - row 0 holds the committed text ("main"); other rows are scratch for branches and scoring;
  - crop is a length change: attention masks every position past a row's length, so stale KV
    there is never read;
  - fan_out copies the shared prefix into scratch rows; select_row copies a winning row to row 0;
    select_row, or a crop of row 0, is the round's commit and frees every scratch row.

Used only where it is exact in structure (Llama, Mistral, Qwen2 without sliding windows; Gemma-3
with its sliding-window layers, see Family), on CUDA by default; everywhere else, and with
Execution(fast="off") (config.py), the engine keeps transformers' eager forward over a DynamicCache
(which the CPU tests pin to HF generate bit for bit). Every forward keeps all positions' KV, so
sliding layers are a mask, not a ring buffer: crop and rollback stay length changes. On CUDA its
attention runs in batch.SAFE_CUDA_KERNELS, as the eager path's does.
fast="on" also enables it on CPU (eager, no graphs: for tests); cuda_graphs=False keeps the static
cache but runs every forward eagerly, compile=False leaves the ops unfused (both for measurement).
"""
from __future__ import annotations

import threading
import warnings
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import Execution
from .models import attention_shape

SUPPORTED = ("llama", "mistral", "qwen2", "gemma3_text")
_ROUND = 256          # KV capacity grows in steps of this many positions


def supported(lm) -> bool:
    model = lm.model
    cfg = model.config
    if getattr(cfg, "model_type", "") not in SUPPORTED:
        return False
    # load_model places a model that fits on one GPU with device_map={"": gpu}; one spread over
    # several devices by accelerate keeps the eager path
    if len(set((getattr(model, "hf_device_map", None) or {"": None}).values())) > 1:
        return False
    if cfg.model_type == "gemma3_text":
        # the forward below has Gemma-3's causal attention over full and sliding layers; not the
        # attention-logit softcap (Gemma-2 style) or the bidirectional variant (EmbeddingGemma)
        if getattr(cfg, "attn_logit_softcapping", None) or getattr(cfg, "use_bidirectional_attention", False):
            return False
    elif getattr(cfg, "use_sliding_window", False) or any(t != "full_attention" for t in getattr(cfg, "layer_types", None) or []):
        return False
    elif cfg.model_type == "mistral" and getattr(cfg, "sliding_window", None):   # Mistral-7B v0.1/v0.2
        return False
    inner = getattr(model, "model", None)
    return all(hasattr(inner, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")) and hasattr(model, "lm_head")


def enabled(lm, mode: str = "auto") -> bool:
    """Whether `lm` decodes on the fast path under Execution.fast = `mode`."""
    if mode == "off":
        return False
    if mode == "on":
        return supported(lm)
    return lm.device.type == "cuda" and supported(lm)


def claim(lm, owner, min_length: int, execution: Execution = Execution()) -> "FastCache | None":
    """The model's fast engine for the request that `owner` (its ModelState) belongs to, as an
    empty main cache, run as `execution` says; None when the fast path is off, unsupported, or busy
    with another request (that request then decodes on the eager path: results are the same, only
    slower)."""
    if not enabled(lm, execution.fast):
        return None
    with _LOCK:
        engine = getattr(lm, "_fast_engine", None)
        if engine is None:
            engine = FastEngine(lm, execution)
            lm._fast_engine = engine
        if engine.owner is not None and engine.owner() is not None:
            return None
        engine.owner = weakref.ref(owner)
        engine.configure(execution)
    engine.reserve(rows=1, length=min_length + _ROUND)
    engine.scratch = []
    return FastCache(engine, 0, 1, 0)


_LOCK = threading.Lock()


@dataclass
class FastCache:
    """`rows` consecutive rows of an engine's KV buffer from `row0`, all holding `length` positions."""
    engine: "FastEngine"
    row0: int
    rows: int
    length: int

    def forward(self, input_ids: torch.Tensor, logits_to_keep: int = 0) -> torch.Tensor:
        return self.engine.forward(self, input_ids, logits_to_keep)

    def crop(self, length: int) -> None:
        self.length = min(self.length, length)
        if self.row0 == 0:  # the engine crops the main cache only to commit: scratch rows are free
            self.engine.scratch = []

    def select_row(self, row: int, length: int) -> "FastCache":
        return self.engine.select_row(self, row, length)

    def fan_out(self, rows: int, length: int) -> "FastCache":
        return self.engine.fan_out(self, rows, length)


@dataclass(frozen=True)
class Family:
    """Where a model family's forward differs from Llama's (Llama, Mistral and Qwen2 have none of
    it; Gemma-3 has all of it)."""
    layer_types: tuple[str, ...]    # per layer: "full_attention" or "sliding_attention"
    window: int | None              # a sliding layer's query at p sees keys p - window < k <= p
    rope_per_type: bool             # the rotary module takes the layer type (local/global RoPE bases)
    unit_offset_norms: bool         # RMSNorm scales by (1 + weight), in float32
    qk_norms: bool                  # RMSNorm over each head's queries and keys before RoPE
    sandwich_norms: bool            # norms on the attention and MLP outputs, and before the MLP
    logit_softcap: float | None     # logits = cap * tanh(logits / cap)

    @staticmethod
    def of(cfg) -> "Family":
        types = tuple(getattr(cfg, "layer_types", None) or ("full_attention",) * cfg.num_hidden_layers)
        if cfg.model_type != "gemma3_text":
            return Family(types, None, False, False, False, False, None)
        return Family(types, cfg.sliding_window, True, True, True, True, cfg.final_logit_softcapping)


class FastEngine:
    def __init__(self, lm, execution: Execution = Execution()):
        model = lm.model
        cfg = model.config
        self.lm = lm
        self.model = model
        self.device = lm.device
        self.dtype = next(model.parameters()).dtype
        inner = model.model
        self.embed, self.layers, self.norm, self.rotary = inner.embed_tokens, inner.layers, inner.norm, inner.rotary_emb
        self.lm_head = model.lm_head
        self.n_heads = cfg.num_attention_heads
        self.n_kv, self.head_dim = attention_shape(cfg)
        self.vocab_limit = lm.vocab.n_tokens
        self.family = Family.of(cfg)
        self.silu = (getattr(cfg, "hidden_act", None) or getattr(cfg, "hidden_activation", None)) == "silu"
        self.k = self.v = None
        self.capacity_rows = self.capacity_len = 0
        self.rope: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # layer type -> (cos, sin) [T, D]
        from .batch import safe_attention   # not at the top: batch imports kv, which imports this module
        self.safe_attention = safe_attention
        self.graphs: dict[tuple, "_Graph"] = {}   # (row0, rows, tokens[, "last"]) -> graph
        self.stream = None            # the side stream graphs are captured on (on self.device)
        self.ops = _Ops(self.device, self.family.unit_offset_norms, execution.compile)
        self.graphs_on = False        # set per request by configure()
        # One matmul for q, k, v and one for gate, up: at batch 1 a small matmul costs its launch
        # and ramp more than its bytes, and these are 5 of a layer's 7
        self.qkv = [_Fused([l.self_attn.q_proj, l.self_attn.k_proj, l.self_attn.v_proj]) for l in self.layers]
        self.gate_up = [_Fused([l.mlp.gate_proj, l.mlp.up_proj]) for l in self.layers]
        self.owner = None
        self.scratch: list[tuple[int, int]] = []   # live scratch regions (row0, rows), newest last

    def configure(self, execution: Execution) -> None:
        """Run the next request as `execution` says: graphs on or off, and the ops fused or not (a
        change drops the captured graphs, which replay the ops they were captured with)."""
        self.graphs_on = self.device.type == "cuda" and execution.cuda_graphs
        if (self.device.type == "cuda" and execution.compile) != self.ops.compiled:
            self.ops = _Ops(self.device, self.family.unit_offset_norms, execution.compile)
            self.graphs.clear()

    def use_graphs(self) -> bool:
        return self.graphs_on

    # --- buffers -----------------------------------------------------------------------------

    def reserve(self, rows: int, length: int) -> None:
        """Grow the buffer to hold at least `rows` rows of `length` positions (keeps contents)."""
        if rows <= self.capacity_rows and length <= self.capacity_len:
            return
        new_rows = max(rows, self.capacity_rows)
        new_len = max(self.capacity_len, -(-length // _ROUND) * _ROUND)
        shape = (len(self.layers), new_rows, self.n_kv, new_len, self.head_dim)
        k = torch.zeros(shape, dtype=self.dtype, device=self.device)
        v = torch.zeros(shape, dtype=self.dtype, device=self.device)
        if self.k is not None:
            k[:, :self.capacity_rows, :, :self.capacity_len] = self.k
            v[:, :self.capacity_rows, :, :self.capacity_len] = self.v
        self.k, self.v = k, v
        if new_len != self.capacity_len:
            self.rope = self._rope_tables(new_len)
        self.capacity_rows, self.capacity_len = new_rows, new_len
        self.graphs.clear()  # graphs hold the old buffers' addresses

    def _rope_tables(self, length: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """cos, sin [length, head_dim] for each layer type, from the model's own rotary module (so
        its scaling, e.g. Llama-3's or Gemma-3's linear one, is the model's). Gemma-3's module takes
        the layer type: its sliding layers have their own RoPE base."""
        positions = torch.arange(length, device=self.device)[None]
        probe = torch.zeros(1, dtype=self.dtype, device=self.device)
        tables = {}
        for kind in set(self.family.layer_types):
            cos, sin = self.rotary(probe, positions, kind) if self.family.rope_per_type else self.rotary(probe, positions)
            tables[kind] = cos[0], sin[0]
        return tables

    # --- cache operations --------------------------------------------------------------------

    def fan_out(self, src: FastCache, rows: int, length: int) -> FastCache:
        """Scratch rows sharing src's first `length` positions. A new region never overlaps the
        newest live one (a round scores while its kept branch cache is still live)."""
        if src.row0 != 0:
            raise RuntimeError("fast cache: fan_out is only taken from the main row")
        keep = self.scratch[-1:]
        row0 = 1
        for r0, n in sorted(keep):
            if row0 + rows <= r0:
                break
            row0 = max(row0, r0 + n)
        self.reserve(row0 + rows, length + 1)
        self.scratch = keep + [(row0, rows)]
        dst = slice(row0, row0 + rows)
        self.k[:, dst, :, :length] = self.k[:, 0:1, :, :length]
        self.v[:, dst, :, :length] = self.v[:, 0:1, :, :length]
        return FastCache(self, row0, rows, length)

    def select_row(self, src: FastCache, row: int, length: int) -> FastCache:
        """Row `row` of `src` as the main cache (copied to row 0 unless it is row 0)."""
        r = src.row0 + row
        self.scratch = []  # a commit: every scratch region is dead now
        if r != 0:
            self.k[:, 0, :, :length] = self.k[:, r, :, :length]
            self.v[:, 0, :, :length] = self.v[:, r, :, :length]
        return FastCache(self, 0, 1, length)

    # --- the forward -------------------------------------------------------------------------

    def forward(self, cache: FastCache, input_ids: torch.Tensor, logits_to_keep: int) -> torch.Tensor:
        """Logits (float32, padded vocabulary masked) of `input_ids` [rows, t]; extends `cache`.

        On CUDA, forwards of up to MAX_GRAPH_TOKENS tokens (decode steps, branches, scoring) replay
        a graph captured for their row slot and token bucket (t rounded up to a power of two; the
        padding tokens' KV lands past the cache length, where it is never read). A longer forward
        that keeps only the last position's logits (a prompt's prefill) replays graphs chunk by
        chunk (_prefill); any other runs eagerly.
        """
        rows, t = input_ids.shape
        if rows != cache.rows:
            raise RuntimeError(f"fast cache: {rows} input rows for a {cache.rows}-row cache")
        input_ids = input_ids.to(self.device)
        bucket = 1 << (t - 1).bit_length()
        if self.use_graphs() and bucket <= MAX_GRAPH_TOKENS:
            self.reserve(cache.row0 + rows, cache.length + bucket)
            if bucket > t:
                input_ids = torch.cat([input_ids, input_ids[:, -1:].expand(rows, bucket - t)], dim=1)
            logits = self._graph(cache.row0, rows, bucket).run(input_ids, cache.length)[:, :t]
            logits = (logits[:, -logits_to_keep:] if logits_to_keep else logits).clone()
        elif self.use_graphs() and logits_to_keep == 1:
            return self._prefill(cache, input_ids)
        else:
            self.reserve(cache.row0 + rows, cache.length + t)
            with _on(self.device):
                logits = self._forward(input_ids, cache.row0, cache.length, logits_to_keep)
        cache.length += t
        return logits

    def _prefill(self, cache: FastCache, input_ids: torch.Tensor) -> torch.Tensor:
        """The last position's logits of a long forward, as graph replays of PREFILL_CHUNK tokens
        and one for the rest, padded to its bucket. An eager forward of a 500-token prompt launches
        ~1,000 kernels from Python, which on a GPU machine's host takes longer than the GPU's work
        (and two models' prefills in threads take turns at the GIL); a replay is one launch. Chunks
        give the same logits up to float rounding (the eager path is the exact one)."""
        rows, t = input_ids.shape
        done = 0
        while t - done > MAX_GRAPH_TOKENS:
            n = min(t - done, PREFILL_CHUNK)
            bucket = 1 << (n - 1).bit_length()
            chunk = input_ids[:, done:done + n]
            if bucket > n:
                chunk = torch.cat([chunk, chunk[:, -1:].expand(rows, bucket - n)], dim=1)
            self.reserve(cache.row0 + rows, cache.length + bucket)
            logits = self._graph(cache.row0, rows, bucket, last=True).run(chunk, cache.length, last=n - 1).clone()
            cache.length += n
            done += n
        if done < t:
            logits = self.forward(cache, input_ids[:, done:], 1)
        return logits

    def _forward(self, input_ids, row0: int, start, keep: int, static_pos: torch.Tensor | None = None,
                 static_last: torch.Tensor | None = None):
        """The model over `input_ids` [R, t] at positions start.. of rows row0..row0+R.

        With `static_pos` (a 1-element device tensor; CUDA-graph capture) the first position is
        read from that tensor and attention spans the whole buffer under a mask, so one graph
        serves every position. With `static_last` (likewise) only that input position's logits
        are computed.
        """
        rows, t = input_ids.shape
        ops, family = self.ops, self.family
        group = self.n_heads // self.n_kv
        rs = slice(row0, row0 + rows)
        first = start if static_pos is None else static_pos
        pos = torch.arange(t, device=self.device) + first
        end = start + t if static_pos is None else self.capacity_len
        masks = self._masks(pos, end, group)
        rope = {kind: (cos[pos], sin[pos]) for kind, (cos, sin) in self.rope.items()}   # [t, D]
        x = self.embed(input_ids)          # Gemma-3's embedding module applies its sqrt(hidden) scale
        h = ops.norm(x, self.layers[0].input_layernorm)
        with self.safe_attention(self.device):
            for i, (layer, kind) in enumerate(zip(self.layers, family.layer_types)):
                o = self._attention(layer.self_attn, i, h, rs, pos, end, masks[kind], rope[kind])
                if family.sandwich_norms:   # Gemma-3 normalises each sublayer's output before the residual
                    x, h = ops.add_norm(x, ops.norm(o, layer.post_attention_layernorm), layer.pre_feedforward_layernorm)
                else:
                    x, h = ops.add_norm(x, o, layer.post_attention_layernorm)
                m = self._mlp(i, layer.mlp, h)
                if family.sandwich_norms:
                    m = ops.norm(m, layer.post_feedforward_layernorm)
                after = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else self.norm
                x, h = ops.add_norm(x, m, after)
        if static_last is not None:
            h = h.index_select(1, static_last)
        elif keep:
            h = h[:, -keep:]
        logits = self.lm_head(h)
        if family.logit_softcap:           # in the model's dtype, as transformers does
            logits = torch.tanh(logits / family.logit_softcap) * family.logit_softcap
        logits = logits.float()
        if self.vocab_limit < logits.shape[-1]:
            logits[..., self.vocab_limit:] = float("-inf")
        return logits

    def _masks(self, pos: torch.Tensor, end: int, group: int) -> dict[str, torch.Tensor]:
        """Per layer type, which of keys 0..end-1 each query row sees: query i (at pos[i]) sees
        keys up to pos[i], on sliding layers only the last `window` of them (keys > pos[i] - window,
        transformers' sliding_window_overlay). Rows are (g, i) for the grouped queries."""
        keys = torch.arange(end, device=self.device)[None, :]
        causal = keys <= pos[:, None]
        masks = {"full_attention": causal}
        if self.family.window:
            masks["sliding_attention"] = causal & (keys > pos[:, None] - self.family.window)
        return {kind: masks[kind].repeat(group, 1) for kind in set(self.family.layer_types)}

    def _attention(self, attn, i: int, h, rs: slice, pos, end, mask, rope):
        """Layer i's self-attention over h [R, t, hidden]: writes its K/V at `pos` of rows `rs`
        and attends to keys 0..end-1 of those rows under `mask`."""
        rows, t, _ = h.shape
        ops, group = self.ops, self.n_heads // self.n_kv
        q, k, v = self.qkv[i](h)
        q = q.view(rows, t, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(rows, t, self.n_kv, self.head_dim).transpose(1, 2)
        v = v.view(rows, t, self.n_kv, self.head_dim).transpose(1, 2)
        if self.family.qk_norms:
            q, k = ops.norm(q, attn.q_norm), ops.norm(k, attn.k_norm)
        q, k = ops.rope(q, k, *rope)
        kb, vb = self.k[i, rs], self.v[i, rs]
        kb.index_copy_(2, pos, k)
        vb.index_copy_(2, pos, v)
        # GQA without copying K/V per query head: a KV head's `group` query heads become
        # `group` x t query rows against that head's keys.
        qg = q.reshape(rows, self.n_kv, group * t, self.head_dim)
        o = F.scaled_dot_product_attention(qg, kb[:, :, :end], vb[:, :, :end], attn_mask=mask, scale=attn.scaling)
        return attn.o_proj(o.reshape(rows, self.n_heads, t, self.head_dim).transpose(1, 2).reshape(rows, t, -1))

    def _mlp(self, i: int, mlp, h):
        gate, up = self.gate_up[i](h)
        return mlp.down_proj(self.ops.silu_mul(gate, up) if self.silu else mlp.act_fn(gate) * up)

    def _graph(self, row0: int, rows: int, t: int, last: bool = False) -> "_Graph":
        key = (row0, rows, t) if not last else (row0, rows, t, "last")
        g = self.graphs.get(key)
        if g is None:
            if self.stream is None:
                self.stream = torch.cuda.Stream(self.device)
            g = self.graphs[key] = _Graph(self, row0, rows, t, last)
        return g


MAX_GRAPH_TOKENS = 64
PREFILL_CHUNK = 512   # a prefill's graphs: buckets of 128, 256 and 512 tokens (one each per row slot)
_CAPTURE_LOCK = threading.Lock()


class _Graph:
    """One forward of `t` tokens for rows row0..row0+rows, captured once, replayed at any position;
    with `last`, computing only one position's logits (chosen at each replay)."""

    def __init__(self, engine: FastEngine, row0: int, rows: int, t: int, last: bool = False):
        self.engine, self.row0, self.rows = engine, row0, rows
        self.ids = torch.zeros(rows, t, dtype=torch.long, device=engine.device)
        self.pos = torch.zeros(1, dtype=torch.long, device=engine.device)
        self.last = torch.zeros(1, dtype=torch.long, device=engine.device) if last else None
        self.graph = None
        self.out = None

    def run(self, input_ids: torch.Tensor, position: int, last: int = 0) -> torch.Tensor:
        """The static output: valid until the next replay (callers slice and clone it)."""
        e = self.engine
        with _on(e.device):
            self.ids.copy_(input_ids, non_blocking=True)
            self.pos.fill_(position)
            if self.last is not None:
                self.last.fill_(last)
            if self.graph is None:
                # One capture at a time in the process: entering a capture synchronizes the whole
                # device, which CUDA refuses while another thread's capture is under way on it
                # (models decoding in threads, adafuse/parallel.py).
                with _CAPTURE_LOCK:
                    self._capture()
            self.graph.replay()
            return self.out

    def _capture(self) -> None:
        # Warm-up on the engine's side stream (lazy inits, cuBLAS workspaces, compiled kernels),
        # then capture on it: the stream must be on the model's device (torch's default capture
        # stream is made once, on whichever device was current first). Both compute the forward
        # for the current inputs, so the KV they write is exactly what the replay writes.
        e = self.engine
        main = torch.cuda.current_stream(e.device)
        e.stream.wait_stream(main)
        with torch.cuda.stream(e.stream):
            for _ in range(2):
                e._forward(self.ids, self.row0, None, 0, static_pos=self.pos, static_last=self.last)
        main.wait_stream(e.stream)
        graph = torch.cuda.CUDAGraph()
        # The graph must own every buffer it uses. cuBLAS keeps a workspace per stream, made by
        # the warm-up above in the ordinary pool; a capture would reuse it, and whoever clears
        # the workspaces later (torch.compile's CUDA graphs do, before and after each recording:
        # HF generate with a static cache, in bench_gpu) frees it under the graph, whose replays
        # then write into freed memory ("unspecified launch failure", seen on an H200). Cleared
        # before the capture, the workspace is made inside the graph's private pool; cleared
        # after, eager work gets one of its own.
        torch.cuda.synchronize(e.device)
        _clear_cublas_workspaces()
        with torch.cuda.graph(graph, stream=e.stream, capture_error_mode="thread_local"):
            self.out = e._forward(self.ids, self.row0, None, 0, static_pos=self.pos, static_last=self.last)
        _clear_cublas_workspaces()
        self.graph = graph


def _clear_cublas_workspaces() -> None:
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)   # CUDA builds only
    if clear is not None:
        clear()


class _Fused:
    """Linear layers that read the same input, as one matmul over their weights stacked. Each
    layer's weight (and bias) becomes a view of its rows of the stacked one, so the model holds no
    second copy and its own forward (the eager path, HF generate) is unchanged; only a later
    save_pretrained would find q, k and v sharing one storage. Layers that are not plain
    floating-point linears (quantized) stay apart."""

    def __init__(self, linears: list):
        self.linears = linears
        self.sizes = [lin.weight.shape[0] for lin in linears]
        self.weight = self.bias = None
        plain = all(type(lin.weight) is torch.nn.Parameter and lin.weight.dtype.is_floating_point
                    and (lin.bias is None) == (linears[0].bias is None) for lin in linears)
        if not plain:
            return
        # ordinary tensors even when the engine is first claimed under inference mode (a decode
        # is): the model's weights become views of these, and an inference tensor there would
        # break every later autograd-tracked forward of the model
        with torch.inference_mode(False), torch.no_grad():
            self.weight = torch.cat([lin.weight for lin in linears])
            self.bias = None if linears[0].bias is None else torch.cat([lin.bias for lin in linears])
            start = 0
            for lin, n in zip(linears, self.sizes):
                lin.weight = torch.nn.Parameter(self.weight[start:start + n], requires_grad=False)
                if self.bias is not None:
                    lin.bias = torch.nn.Parameter(self.bias[start:start + n], requires_grad=False)
                start += n

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.weight is None:
            return [lin(x) for lin in self.linears]
        return list(F.linear(x, self.weight, self.bias).split(self.sizes, dim=-1))


class _Ops:
    """The elementwise pieces of a layer, as transformers computes them (float32 RMSNorm, Llama's
    or Gemma's, RoPE in the model dtype); on CUDA compiled by torch.compile into a few fused kernels each, which cuts
    a decode step from ~45 to ~17 kernels per layer. compile=False keeps them eager."""

    def __init__(self, device: torch.device, unit_offset_norms: bool = False, compile: bool = True):
        self.compiled = device.type == "cuda" and compile
        fns = (_gemma_norm, _gemma_add_norm) if unit_offset_norms else (_norm, _add_norm)
        self._norm, self._add_norm, self._rope, self._silu_mul = fns + (_rope, _silu_mul)
        if self.compiled:
            import torch._dynamo
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
            self._norm, self._add_norm, self._rope, self._silu_mul = (
                _compiled_or_eager(f) for f in (self._norm, self._add_norm, _rope, _silu_mul))

    def norm(self, x, module):
        return self._norm(x, module.weight, _eps(module))

    def add_norm(self, x, y, module):
        return self._add_norm(x, y, module.weight, _eps(module))

    def rope(self, q, k, cos, sin):
        return self._rope(q, k, cos, sin)

    def silu_mul(self, gate, up):
        return self._silu_mul(gate, up)


def _eps(norm) -> float:
    """An RMSNorm module's epsilon (Llama's name for it, or Gemma's)."""
    return norm.variance_epsilon if hasattr(norm, "variance_epsilon") else norm.eps


def _compiled_or_eager(fn):
    """torch.compile(fn), falling back to fn for good if compiling fails (no compiler, old Triton)."""
    compiled = torch.compile(fn, dynamic=True)
    state = {"ok": True}

    def run(*args):
        if state["ok"]:
            try:
                return compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compile failure leaves the eager op
                if torch.cuda.is_current_stream_capturing():
                    raise
                state["ok"] = False
                warnings.warn(f"adafuse.fast: torch.compile failed ({type(e).__name__}: {e}); "
                              "using eager elementwise ops")
        return fn(*args)
    return run


def _norm(x, weight, eps: float):
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def _add_norm(x, y, weight, eps: float):
    x = x + y
    return x, _norm(x, weight, eps)


def _gemma_norm(x, weight, eps: float):
    """Gemma's RMSNorm: the (1 + weight) scale is applied in float32, before the cast back."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (xf * (1.0 + weight.float())).to(x.dtype)


def _gemma_add_norm(x, y, weight, eps: float):
    x = x + y
    return x, _gemma_norm(x, weight, eps)


def _rope(q, k, cos, sin):
    return q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin


def _silu_mul(gate, up):
    return F.silu(gate) * up


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _on(device: torch.device):
    """Make `device` current (graph replays and kernels go to its current stream); a no-op on CPU."""
    if device.type == "cuda":
        return torch.cuda.device(device)
    import contextlib
    return contextlib.nullcontext()
