#!/usr/bin/env python3
"""Write the synthetic Xen and libvirt example logs of this folder to the documented formats
(see README.md here). Numbers come from a simple pre-copy simulation,
not from a real hypervisor. Run from this folder: python3 make-synthetic.py"""
import datetime


def ts(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S')


def xen3(start, domid, pages, rate_pps, hot, r_bps, prefix=True, maxit=29):
    """Xen 3.x xc_domain_save output for one save; returns (lines, end time)."""
    out = []
    t = start

    def p(tt, lvl, mod, msg):
        return f"[{ts(tt)} xend 3113] {lvl} ({mod}) {msg}" if prefix else msg
    if prefix:
        out.append(p(t, 'DEBUG', 'XendCheckpoint:124', f'[xc_save]: /usr/lib/xen/bin/xc_save 27 {domid} 0 0 1'))
    out.append(p(t, 'INFO', 'XendCheckpoint:498', f'xc_linux_save start DOM{domid} live=true'))
    to_send, total, i = pages, 0, 1
    while True:
        skipped = 0 if i == 1 else int(to_send * min(0.45, 0.05 + 0.02 * i))
        sent = to_send - skipped
        delta_ms = max(1, round(sent * 4096 * 1000 / r_bps))
        dirtied = min(hot, int(rate_pps * delta_ms / 1000))
        total += sent
        prog = ''.join('\b\b\b\b%3d%%' % q for q in (5, 25, 50, 75, 100))
        head = f'Saving memory pages: iter {i}   0%{prog}\r {i}: sent {sent}, skipped {skipped}, '
        t += delta_ms / 1000
        if sent + skipped < 50 or i >= maxit or total > 3 * pages:
            out.append(p(t, 'INFO', 'XendCheckpoint:498', head + 'Start last iteration'))
            break
        mbs = sent * 4096 // (delta_ms * 125)
        dmbs = dirtied * 4096 // (delta_ms * 125)
        out.append(p(t, 'INFO', 'XendCheckpoint:498', head +
                     f'delta {delta_ms}ms, dom0 45%, target 38%, sent {mbs}Mb/s, dirtied {dmbs}Mb/s {dirtied} pages'))
        to_send = dirtied
        i += 1
    out.append(p(t, 'INFO', 'XendCheckpoint:498', f'Total pages sent= {total} ({total / pages:.2f}x)'))
    out.append(p(t, 'INFO', 'XendCheckpoint:498', 'All memory is saved'))
    return out, t


def xen4(start, domid, pages, rate, hot, r_bps):
    """Xen 4.6+ progress lines, stamped at the start of each iteration."""
    out = []
    t = start

    def p(tt, msg):
        return f"[{ts(tt)} xl 2211] INFO (libxc) {msg}"
    out.append(p(t, f'xc: info: Saving domain {domid}, type x86 PV'))
    send, it = pages, 0
    while True:
        d = send * 4096 / r_bps
        prog = ''.join(f'\rxc: info: Frames iteration {it} of 5: {int(send * f)}/{send}  {int(f * 100)}%' for f in (0.5, 1.0))
        out.append(p(t, f'xc: info: Frames iteration {it} of 5: 0/{send}    0%' + prog))
        t += d
        dirtied = min(hot, int(rate * d))
        if it >= 5 or dirtied < 50:
            break
        send = dirtied
        it += 1
    out.append(p(t, 'xc: info: End of stream'))
    return out, t


def stamp(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%S.%f000Z')


def mib(b):
    return f"{b / 1048576:.3f} MiB"


def block(job, el, proc, rem, total, rate, it, const, normal, extra):
    return f"""Job type:         {job}
Time elapsed:     {el}         ms
Data processed:   {mib(proc)}
Data remaining:   {mib(rem)}
Data total:       {mib(total)}
Memory processed: {mib(proc)}
Memory remaining: {mib(rem)}
Memory total:     {mib(total)}
Memory bandwidth: 32.000 MiB/s
Dirty rate:       {rate}         pages/s
Page size:        4096         B
Iteration:        {it}
Constant pages:   {const}
Normal pages:     {normal}
Normal data:      {mib(normal * 4096)}
""" + extra


def qemu_sim(total, nonzero, rate, hot, r_bps, timeout=None):
    """QEMU-style pre-copy sampled every second: (job, t, processed, remaining, iter, rate, const, normal)."""
    snaps = []
    t, proc, const, normal, it = 0.0, 0, 0, 0, 1
    zero = (total - nonzero) // 4096
    to_send, dirt, step, first = nonzero, 0, 0.25, True
    while True:
        if first:
            const = zero
            proc += zero * 9
            first = False
        s = min(int(r_bps * step), to_send)
        to_send -= s
        proc += s + (s // 4096) * 8
        normal += s // 4096
        dirt = min(hot * 4096, dirt + int(rate * 4096 * step))
        t += step
        if to_send <= 0:
            if dirt < r_bps * 0.3:
                it += 1
                proc += dirt
                normal += dirt // 4096
                t += dirt / r_bps
                snaps.append(('Completed', t, proc, 0, it, 0, const, normal))
                return snaps
            it += 1
            to_send, dirt = dirt, 0
        if abs(t - round(t)) < 1e-9:
            snaps.append(('Unbounded', t, proc, to_send, it, rate if it > 1 else 0, const, normal))
        if timeout and t >= timeout:
            snaps.append(('Cancelled', t, proc, to_send, it, rate, const, normal))
            return snaps


def main():
    lines = ['[2012-03-09 13:37:00 xend 3113] DEBUG (XendDomainInfo:1881) XendDomainInfo.handleShutdownWatch']
    a, t = xen3(1331300230, 7, 65536, 3000, 12288, 100e6)
    lines += a
    lines.append(f'[{ts(t + 1)} xend 3113] DEBUG (XendDomainInfo:2398) XendDomainInfo.destroy: domid=7')
    b, t = xen3(t + 60, 8, 131072, 40000, 40000, 100e6)  # dirties too fast: stops at the 3x cap
    lines += b
    lines.append(f'[{ts(t + 1)} xend 3113] DEBUG (XendDomainInfo:2398) XendDomainInfo.destroy: domid=8')
    open('xen3-xend.log', 'w').write('\n'.join(lines) + '\n')
    c, _ = xen3(0, 3, 32768, 1000, 4096, 50e6, prefix=False)
    open('xen3-libxc-save.txt', 'w').write('\n'.join(c) + '\n')
    e, _ = xen4(1795600000, 12, 65536, 2000, 8192, 100e6)
    open('xen4-xl.log', 'w').write('\n'.join(e) + '\n')
    text = ''
    for (t0, rate, hot, timeout) in [(1795600000, 2000, 16384, None), (1795600600, 12000, 65536, 20)]:
        for (job, tt, proc, rem, it, r, const, normal) in qemu_sim(1 << 30, 300 << 20, rate, hot, 32 << 20, timeout):
            el = int(tt * 1000)
            if job == 'Completed':
                extra = "Total downtime:   42           ms\nSetup time:       3            ms\n"
            elif job == 'Unbounded':
                extra = "Expected downtime: 300         ms\nSetup time:       3            ms\n"
            else:
                extra = ""
            text += stamp(t0 + tt) + "\n" + block(job, el, proc, rem, 1 << 30, r, it, const, normal, extra) + "\n"
    open('libvirt-domjobinfo.txt', 'w').write(text)


main()
