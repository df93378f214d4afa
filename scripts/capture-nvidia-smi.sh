#!/bin/bash
# Records what a real nvidia-smi prints for every query the hive makes, so
# the fake (packages/hive/test/fixtures/nvidia-smi) can be checked against a
# real driver: each field alone (which names this driver knows, and how it
# spells each value), the hive's whole query line, loop mode, an unknown
# field's answer, -L, --query-compute-apps and `pmon -c 1 -s um` while a
# small PyTorch job holds the GPU, and whether the kernel log is readable.
# Usage: scripts/capture-nvidia-smi.sh OUTDIR   (a few minutes at most; needs python3 with torch for the job)
set -u
out=${1:?usage: capture-nvidia-smi.sh OUTDIR}
mkdir -p "$out"
# Every name the hive queries, both driver generations (packages/hive/src/gpu/nvidia-smi.ts GPU_FIELDS and
# packages/protocol/src/gpu-signals.ts query lists), plus the per-reason clock fields the fake also answers.
FIELDS="index uuid name pci.bus_id memory.total memory.used memory.free utilization.gpu utilization.memory temperature.gpu power.draw power.limit mig.mode.current
temperature.memory temperature.gpu.tlimit clocks.current.sm clocks.sm clocks.current.memory clocks.mem pstate
clocks_event_reasons.active clocks_throttle_reasons.active clocks_event_reasons.supported clocks_event_reasons.gpu_idle
clocks_event_reasons.sw_power_cap clocks_event_reasons.hw_slowdown clocks_event_reasons.sw_thermal_slowdown
ecc.mode.current ecc.errors.corrected.volatile.total ecc.errors.uncorrected.volatile.total ecc.errors.corrected.aggregate.total
ecc.errors.uncorrected.aggregate.total retired_pages.single_bit_ecc.count retired_pages.sbe retired_pages.double_bit.count
retired_pages.dbe retired_pages.pending remapped_rows.correctable remapped_rows.sbe remapped_rows.uncorrectable remapped_rows.dbe
remapped_rows.pending remapped_rows.failure pcie.link.gen.gpucurrent pcie.link.gen.current pcie.link.width.current fan.speed
gpu_recovery_action driver_version"
HIVE="index,uuid,name,pci.bus_id,memory.total,memory.used,memory.free,utilization.gpu,utilization.memory,temperature.gpu,power.draw,power.limit,mig.mode.current,temperature.memory,temperature.gpu.tlimit,clocks.current.sm,clocks.current.memory,pstate,clocks_event_reasons.active,ecc.mode.current,ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total,ecc.errors.corrected.aggregate.total,ecc.errors.uncorrected.aggregate.total,retired_pages.single_bit_ecc.count,retired_pages.double_bit.count,retired_pages.pending,remapped_rows.correctable,remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure,pcie.link.gen.gpucurrent,pcie.link.width.current,fan.speed,gpu_recovery_action"
run() { # run NAME CMD...: stdout, stderr and exit code, each in its own file
	local name=$1
	shift
	timeout 20 "$@" >"$out/$name.out" 2>"$out/$name.err"
	echo $? >"$out/$name.rc"
}
run version nvidia-smi --version
run list nvidia-smi -L
for f in $FIELDS; do run "field.$f" nvidia-smi --query-gpu="$f" --format=csv,noheader,nounits; done
run query-idle nvidia-smi --query-gpu="$HIVE" --format=csv,noheader,nounits
run query-idle-header nvidia-smi --query-gpu="$HIVE" --format=csv
run invalid-field nvidia-smi --query-gpu=index,no.such.field --format=csv,noheader,nounits
run apps-idle nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits
# Two small PyTorch jobs, so compute-apps has two lines: each holds ~1 GiB more than the other and multiplies for 25 s.
for gib in 1 2; do
	python3 -c "
import torch, time
x = torch.empty(int($gib * 2**30), dtype=torch.uint8, device='cuda')
a = torch.randn(4096, 4096, device='cuda')
end = time.time() + 25
while time.time() < end:
    a = (a @ a).clamp_(-1, 1)
torch.cuda.synchronize()
" >"$out/job$gib.out" 2>&1 &
	echo $! >"$out/job$gib.pid"
done
sleep 12
run apps-busy nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits
run apps-busy-header nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv
run apps-busy-used-gpu-memory nvidia-smi --query-compute-apps=pid,gpu_uuid,used_gpu_memory --format=csv,noheader,nounits
run query-busy nvidia-smi --query-gpu="$HIVE" --format=csv,noheader,nounits
run loop timeout -s INT 3 nvidia-smi --query-gpu="$HIVE" --format=csv,noheader,nounits --loop-ms=500
run pmon nvidia-smi pmon -c 1 -s um
wait
run apps-after nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits
run query-q nvidia-smi -q
# The kernel log: the hive reads Xids from /dev/kmsg; record whether it is there and readable.
run kmsg-ls ls -l /dev/kmsg /proc/driver/nvidia/version
run kmsg-head bash -c 'timeout 2 cat /dev/kmsg | grep -m 20 -i nvrm'
run driver-version cat /proc/driver/nvidia/version
uname -a >"$out/uname.out"
