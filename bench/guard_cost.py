"""Cost of the non-finite-loss guard's per-call hook on the CPU (what a unit test must not assert).

python bench/guard_cost.py [--calls 5000] [--repeats 5]

Prints the median over repeats of the microseconds one ``on_train_batch_end`` call takes, for a chunk of
1 and of 16 losses (``data.steps_per_call``); a step of the chapter's model is about 1 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cf_lightning.callbacks.nonfinite import NonFiniteLossGuard


def per_call_us(steps_per_call: int, calls: int) -> float:
    guard = NonFiniteLossGuard()
    outputs = {"loss": torch.full((steps_per_call,), 0.8)}
    start = time.perf_counter()
    for i in range(calls):
        guard.on_train_batch_end(None, None, outputs, None, i)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for steps in (1, 16):
        times = [per_call_us(steps, args.calls) for _ in range(args.repeats)]
        print(f"steps_per_call={steps:2d}: {statistics.median(times):6.2f} µs per call (median of {args.repeats})")


if __name__ == "__main__":
    main()
