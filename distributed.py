"""Several processes training one model (torchrun + DistributedDataParallel), and the few
collectives the training loop needs. One plain process gets a `World` of size 1, for which
every method here is a no-op that changes no number.

    torchrun --standalone --nproc-per-node 2 trainer.py --device cpu ...          # gloo
    torchrun --standalone --nproc-per-node 4 trainer.py --device cuda ...         # nccl, a GPU each

What a distributed run does (trainer.fit and engine.train_one_epoch call the methods below):

- Every process holds the whole training part in memory and draws the same seeded order of
  each epoch; `--batch-size` is the GLOBAL batch, and each process trains on its `shard` of
  every batch (as even as can be, the lower ranks taking the extra rows; a process left without
  a row when the last batch holds fewer rows than processes runs one copied row with loss
  weight 0, which keeps it in step). So N processes take the optimiser steps one process takes.
- The loss of each process is its rows' loss SUM divided by what the whole batch's mean divides
  by (the number of rows, or for a class-weighted loss the sum of the rows' class weights, which
  each process can compute, as it has every label), times N: DistributedDataParallel averages
  the gradients over the N processes, so the step gets the one-process gradient (to float
  rounding), uneven shards and weighted losses included (per-process means averaged would not).
- Not the same as one process: BatchNorm normalises with each process's own rows (B/N of them;
  SyncBatchNorm works on GPUs only, and per-process statistics are what the CPU path can test),
  the running statistics that are kept are rank 0's (DDP broadcasts rank 0's buffers before
  every forward), and dropout draws other masks (each process reseeds it per epoch from seed,
  epoch and rank, so the processes drop differently and --resume repeats them). Augmentation
  draws are the one-process draws (every process draws for the whole batch, uses its rows).
- Validation and every write happen on rank 0; its early-stopping decision and any Ctrl-C are
  shared (`any`), so all processes leave the loop after the same step.
- Failures: a process that dies breaks the others' next collective, and torchrun sends the
  rest SIGTERM; both end a process with one line (`RunError`, exit 1). Ctrl-C reaches torchrun,
  which passes SIGINT to every process: here it only sets a flag, which the processes compare
  every STOP_CHECK_STEPS steps (a Ctrl-C inside a collective would leave the others waiting in
  it); they stop together, and rank 0 evaluates the best weights as a one-process run does.
  (Outside the training loop a Ctrl-C stops a process at once, as in one process.)
"""
from __future__ import annotations

import os
import re
import signal
import socket
import sys
from typing import NoReturn

import numpy as np
import torch
import torch.distributed as dist

from cli import RunError, UsageError

STOP_CHECK_STEPS = 20  # a Ctrl-C is acted on within this many training steps (one collective per check)
_joined = False        # this process joined a process group (World.start): see exit_process


def launch_env() -> tuple[int, int, int]:
    """(rank, local rank, world size) as torchrun sets them; (0, 0, 1) in a plain process."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                int(os.environ.get("WORLD_SIZE", 1)))
    except ValueError:
        raise UsageError("RANK, LOCAL_RANK and WORLD_SIZE must be whole numbers (torchrun sets them)") from None


class World:
    """This process's place in the run: rank, world size, backend and device, with the
    collectives the training loop uses. A context manager: leaving it ends the process group
    and turns a lost peer into one RunError line."""

    def __init__(self, rank: int = 0, local_rank: int = 0, size: int = 1):
        self.rank, self.local_rank, self.size = rank, local_rank, size
        self.backend: str | None = None  # None: one process, no process group
        self.device = torch.device("cpu")
        self.devices: list[str] = []     # every process's "device@host", in rank order
        self._stop = False               # Ctrl-C (SIGINT) seen by this process
        self.defer_sigint = False        # True while training: SIGINT waits for the next shared check
        self._armed = False              # SIGTERM raises RunError (once)
        self._handlers: dict = {}

    @classmethod
    def from_env(cls) -> "World":
        return cls(*launch_env())

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def start(self, device: torch.device) -> torch.device:
        """Join the process group: nccl with GPU LOCAL_RANK when `device` is CUDA, gloo on the
        CPU -> this process's device. One process: `device` back, nothing started."""
        if not self.distributed:
            self.device = device
            self.devices = [str(device)]
            return device
        if device.type == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {self.local_rank} needs GPU {self.local_rank}, but this machine has "
                                 f"{torch.cuda.device_count()}: --nproc-per-node must not exceed its GPUs")
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
            self.backend = "nccl"
        else:
            self.backend = "gloo"
        self.device = device
        dist.init_process_group(self.backend, device_id=device if device.type == "cuda" else None)
        global _joined
        _joined = True
        names: list = [None] * self.size
        dist.all_gather_object(names, f"{device}@{socket.gethostname()}")
        self.devices = names
        self._handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, self._on_sigint)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._armed = True
        return device

    def where(self, device, batch_size: int) -> str:
        """Where a run trains, for its first line: the device, or the processes and their share
        of the global batch."""
        if not self.distributed:
            return str(device)
        per, machines = batch_size // self.size, len({d.split("@")[-1] for d in self.devices})
        return (f"{self.size} processes ({self.backend}, {machines} machine(s)), global batch {batch_size} "
                f"= {per}{'' if batch_size % self.size == 0 else f'-{per + 1}'} beats per process")

    def describe(self) -> dict:
        """The report's record of where the run ran (environment section)."""
        return {"world_size": self.size, "backend": self.backend, "devices": list(self.devices)}

    # --- signals -------------------------------------------------------------------------------
    @property
    def interrupt_seen(self) -> bool:
        """Whether this process got SIGINT (torchrun passes Ctrl-C on so)."""
        return self._stop

    def _on_sigint(self, signum, frame) -> None:
        if not self.defer_sigint:  # loading data, evaluating: stop here, as one process does
            raise KeyboardInterrupt
        self._stop = True  # acted on at the next shared check: see stop_check

    def _on_sigterm(self, signum, frame) -> None:
        if self._armed:  # once: a second SIGTERM while unwinding must not interrupt the cleanup
            self._armed = False
            raise RunError("stopped by SIGTERM (torchrun sends it to every process when one of them fails)")

    # --- collectives (no-ops for one process) ---------------------------------------------------
    def any(self, *flags: bool) -> list[bool]:
        """Each flag true on any process -> on all of them (one collective)."""
        if not self.distributed:
            return list(flags)
        t = torch.tensor([float(f) for f in flags], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def stop_check(self, step: int) -> None:
        """Every STOP_CHECK_STEPS-th step: raise KeyboardInterrupt on every process when any of
        them saw Ctrl-C (a collective: all processes call it at every step)."""
        if self.distributed and (step + 1) % STOP_CHECK_STEPS == 0 and self.any(self._stop)[0]:
            raise KeyboardInterrupt

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the processes, in place."""
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    # --- the data and the model ------------------------------------------------------------------
    def shard(self, n: int) -> tuple[int, int]:
        """This process's rows [lo, hi) of a batch of n rows: sizes differ by at most one, the
        lower ranks take the extra rows (so rank 0 always has one)."""
        q, r = divmod(n, self.size)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DistributedDataParallel around `model` (which stays the bare module for checkpoints and
        validation); the model itself for one process."""
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP
        return DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Reseed torch's global generator (dropout) from seed, epoch and rank: the processes
        draw different masks, and a resumed run draws the ones the uninterrupted run drew. One
        process keeps its single stream (restored by --resume), as before."""
        if self.distributed:
            torch.manual_seed(int(np.random.SeedSequence([seed, epoch, self.rank]).generate_state(1)[0]))

    # --- the end -----------------------------------------------------------------------------------
    def __enter__(self) -> "World":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        self._armed = False
        for s, h in self._handlers.items():
            signal.signal(s, h)
        if self.distributed:  # on the way out: torchrun's SIGTERM (sent when any process fails) must not
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # turn this process's own exit code into -15
        if dist.is_available() and dist.is_initialized():
            try:
                dist.destroy_process_group()
            except Exception:  # a broken group: the process ends anyway
                pass
        if err is not None and self.distributed and lost_peer(err):
            raise RunError(f"lost contact with another process of the run ({_short(err)}); "
                           "torchrun's summary names the process that failed") from None
        return False


def exit_process(code: int) -> NoReturn:
    """End the process with `code`, the way a script's `sys.exit(main())` would. A process that
    joined a process group skips the interpreter's teardown (os._exit, after flushing stdout and
    stderr): with torch 2.13, gloo's threads sometimes abort it after destroy_process_group
    ("terminate called without an active exception", SIGABRT; 5 exits of 45 on a busy 2-core
    machine), which turns a finished run into a failed one. By then every output is written and
    renamed, and the group is destroyed (World.__exit__), so nothing is lost by skipping it."""
    if not _joined:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(code)


def lost_peer(err: BaseException) -> bool:
    """Whether an exception is a collective failing because another process went away."""
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    msg = str(err)
    return isinstance(err, RuntimeError) and any(
        k in msg for k in ("gloo", "NCCL", "Connection reset", "Connection closed", "Broken pipe"))


def _short(err: BaseException) -> str:
    """The gist of a backend's error: first line, without its source location and advice."""
    line = (str(err).strip().splitlines() or [type(err).__name__])[0]
    line = re.sub(r"^\[[^\]]*\]\s*", "", line)  # "[.../pair.cc:537] Read error ..." -> "Read error ..."
    return line.split(". ")[0].rstrip(".")
