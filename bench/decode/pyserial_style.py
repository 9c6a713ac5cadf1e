"""The baseline a lab engineer would write: a pyserial-style line parser for Watts up? records.

Reads the same bytes as the Rust decoder benchmark, line by line as `serial.readline()` would
return them, and converts every `#d` record to SI floats (the same 18 fields). Prints
records/s. Usage: python pyserial_style.py FILE [FILE...] --repeat N
"""
import io
import sys
import time

DIV = [10, 10, 1000, 10, 1000, 1, 1000, 10, 10, 1000, 10, 10, 1000, 100, 100, 1, 10, 10]


def parse(stream):
    out = 0
    watts = 0.0
    for raw in stream:  # like serial.readline(): bytes up to and including b"\n"
        line = raw.replace(b"\0", b"").strip()
        if not line.startswith(b"#d,") or not line.endswith(b";"):
            continue
        parts = line[1:-1].split(b",")
        if len(parts) != 21:
            continue
        try:
            vals = [None if p == b"_" else int(p) / d for p, d in zip(parts[3:], DIV)]
        except ValueError:
            continue
        watts += vals[0] or 0.0
        out += 1
    return out, watts


def main():
    args = sys.argv[1:]
    repeat = 1
    if "--repeat" in args:
        i = args.index("--repeat")
        repeat = int(args[i + 1])
        del args[i : i + 2]
    one = b"".join(open(f, "rb").read() for f in args)
    data = one * repeat
    best = None
    for _ in range(3):
        t = time.perf_counter()
        n, _ = parse(io.BytesIO(data))
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    print(f"python pyserial-style: {n} records in {best:.3f} s (best of 3) = {n / best:,.0f} records/s")


if __name__ == "__main__":
    main()
