#!/usr/bin/env python3
"""Compare what a daemon really calls with its seccomp policy.

Usage:
  strace -f -ff -qq -o /tmp/tr/t <command that runs the daemon binary>
  python3 check_trace.py /tmp/tr <path/of/daemon/binary> <netd|execd|attestd>

Follows the daemon's threads from its execve, counts every syscall it made after
exec, and prints those the policy lacks. Syscalls made before `havn_sandbox::enter`
(the loader: execve, arch_prctl, set_tid_address, ...) are listed too; judge them.
Conditional rules (socket family, ioctl request, prctl option) are listed with
their arguments as seen.
"""
import glob, json, os, re, sys

trace_dir, binary, policy = sys.argv[1], sys.argv[2], sys.argv[3]
files = {int(f.rsplit(".", 1)[1]): open(f, errors="replace").read()
         for f in glob.glob(os.path.join(trace_dir, "*.*"))}
mark = 'execve("%s"' % binary
tasks = {t for t, s in files.items() if mark in s}
grew = True
while grew:
    grew = False
    for t in list(tasks):
        for m in re.finditer(r"^(?:clone3|clone|vfork|fork)\(.*\)\s*=\s*(\d+)", files[t], re.M):
            c = int(m.group(1))
            if c in files and c not in tasks:
                tasks.add(c)
                grew = True
calls, conditional = {}, {}
for t in tasks:
    s = files[t]
    i = s.find(mark)
    s = s[i:] if i >= 0 else s
    for m in re.finditer(r"^([a-z0-9_]+)\(([^)]*)", s, re.M):
        calls[m.group(1)] = calls.get(m.group(1), 0) + 1
        if m.group(1) in ("socket", "ioctl", "prctl"):
            conditional.setdefault(m.group(1), set()).add(m.group(2)[:60])
here = os.path.dirname(os.path.abspath(__file__))
rules = json.load(open(os.path.join(here, policy + ".json")))[policy]["filter"]
allowed = {r["syscall"] for r in rules}
print(f"{len(tasks)} tasks, {len(calls)} distinct syscalls")
print("missing from policy:", sorted(c for c in calls if c not in allowed) or "none")
for name, args in sorted(conditional.items()):
    print(f"{name}:", sorted(args))
