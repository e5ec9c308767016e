"""Similar closed cases at scale: index 100,000 closed cases, time the suggestion for new mail.

    python bench/similar.py [--cases 100000] [--mails 2000]

The cases are the labelled set's (tests/data/similar_labelled.json) varied with
places, devices, numbers and a long tail of rarer words, in Chinese and
English, so posting lists have a realistic spread.  Prints the build time,
the per-mail cost (median, p95, max) against the 5 ms target, and the
precision on the labelled set with the big index underneath (the labelled
cases among 100,000 others).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_MS = 5.0

PLACES_ZH = ["一楼", "二楼", "三楼", "四楼", "五楼", "财务部", "销售部", "研发中心", "仓库", "北京分公司", "上海分公司",
             "广州办事处", "会议室A", "会议室B", "前台", "生产车间"]
PLACES_EN = ["floor 1", "floor 2", "floor 3", "finance", "sales", "R&D", "warehouse", "Beijing office",
             "Shanghai office", "meeting room A", "reception", "plant"]
DEVICES = ["HP M404", "Canon C3520", "ThinkPad T14", "Dell U2720Q", "Cisco AnyConnect", "FortiGate", "Exchange 2019",
           "SAP ECC", "Kingdee K3", "Yonyou U8", "Windows 11", "macOS 14", "iPhone 15", "Huawei P60", "AutoCAD 2024"]


def synthetic_words(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ter", "van", "pro", "sys", "net", "dat", "ser", "ver", "log", "cat", "fin", "hub"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def make_cases(n: int, seed: int = 7) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    base = json.loads((REPO / "tests" / "data" / "similar_labelled.json").read_text(encoding="utf-8"))["cases"]
    tail = synthetic_words(rng, 20000)
    cases = []
    for i in range(n):
        c = rng.choice(base)
        zh = any("\u4e00" <= ch <= "\u9fff" for ch in c["subject"])
        place = rng.choice(PLACES_ZH if zh else PLACES_EN)
        extra = " ".join(rng.choice(tail) for _ in range(rng.randint(1, 4)))
        subject = f"{place} {c['subject']} {rng.choice(DEVICES)}" if rng.random() < 0.5 else f"{c['subject']} {place}"
        summary = f"{c['summary']} {extra} #{rng.randint(1, 9999)}"
        lessons = c["lessons"] if rng.random() < 0.7 else f"{c['lessons']} {rng.choice(tail)}"
        cases.append((f"TS-{i + 1:06d}", subject, summary, lessons))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--mails", type=int, default=2000)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO.parent))
    from maildesk.workflow.similar import CaseIndex

    cases = make_cases(args.cases)
    started = time.perf_counter()
    index = CaseIndex()
    for case in cases:
        index.add(*case)
    index.freeze()
    build = time.perf_counter() - started

    labelled = json.loads((REPO / "tests" / "data" / "similar_labelled.json").read_text(encoding="utf-8"))
    rng = random.Random(11)
    queries = [f"{q['subject']}\n{q['text']}" for q in labelled["queries"]]
    mails = [rng.choice(queries) + " " + rng.choice(PLACES_ZH + PLACES_EN) for _ in range(args.mails)]
    wall, cpu = [], []
    for text in mails:
        t0, c0 = time.perf_counter(), time.process_time()
        index.query(text)
        cpu.append((time.process_time() - c0) * 1000)
        wall.append((time.perf_counter() - t0) * 1000)
    print(f"similar cases: {len(index):,} closed cases indexed in {build:.1f} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    for name, times in (("wall", wall), ("cpu", cpu)):
        times.sort()
        median, p95, worst = statistics.median(times), times[int(len(times) * 0.95)], times[-1]
        print(f"per mail ({name}) over {len(mails):,} mails: median {median:.3f} ms, p95 {p95:.3f} ms, "
              f"max {worst:.3f} ms; target < {TARGET_MS:g} ms: median is {median / TARGET_MS:.2f} of it, "
              f"p95 {p95 / TARGET_MS:.2f}")
    return 0 if statistics.median(wall) < TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
