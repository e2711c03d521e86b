"""Peak memory of a child process, read inside it: `/proc/self/status` VmHWM, the high-water mark
of the process's own memory since it started its program. (`getrusage(...).ru_maxrss` is no good
here: a child spawned from the pytest process starts with the parent's peak, several hundred
MiB once torch is loaded, which would hide any difference between two children.)"""

PEAK_MIB = """
def peak_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
"""
