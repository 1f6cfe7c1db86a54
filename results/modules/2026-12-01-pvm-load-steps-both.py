import subprocess, re, statistics, sys, json
def run(config, mod, n):
    cmds = []
    for i in range(n):
        cmds += [f"insmod {mod}.ko", "lsmod -v", f"rmmod {mod}"]
    out = subprocess.run(["/work/wt/mgr/target/release/kmodlab","run","--quiet","--timeout-secs","300","--config",config,"-c","; ".join(cmds)],capture_output=True,text=True).stdout
    samples=[]
    for block in out.split("kmodlab# lsmod -v")[1:]:
        m = re.search(r"load cycles: (.*)\n", block)
        d = dict(zip(*[iter(m.group(1).split())]*2))
        s = re.search(r"server steps: (.*)\n", block)
        if s:
            d.update(dict(zip(*[iter(s.group(1).split())]*2)))
        samples.append({k:int(v) for k,v in d.items()})
    return samples
res={}
for config in ["monolithic","microkernel"]:
    for mod,n in [("hello",11),("big",5)]:
        s = run(config, mod, n)
        s = s[1:]  # drop the first (cold) load
        keys = s[0].keys()
        res[(config,mod)] = {k:(statistics.median([x[k] for x in s]), min(x[k] for x in s), max(x[k] for x in s)) for k in keys}
        print(config, mod, len(s), "samples")
        for k,(med,lo,hi) in res[(config,mod)].items():
            print(f"  {k:9} median {med:>12.0f}  min {lo:>12}  max {hi:>12}")
