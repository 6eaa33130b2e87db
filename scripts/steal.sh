# Sourced by the benchmark scripts: the share of the machine's CPU time that its hypervisor
# gave to other guests (steal, in /proc/stat) while a figure was measured. On a VM a high
# share means the figures beside it are noisy, so every script prints it with them.
#   mark=$(steal_mark); ...measure...; echo "steal $(steal_since "$mark") %"

# "<steal ticks> <all ticks>" now, from the first line of /proc/stat (user nice system idle
# iowait irq softirq steal; guest time is already inside user).
steal_mark() { awk '/^cpu /{ t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t; exit }' /proc/stat; }

# The steal share of all CPU time since MARK, in percent with one decimal.
steal_since() {
  local s0 t0 s1 t1
  read -r s0 t0 <<< "$1"
  read -r s1 t1 <<< "$(steal_mark)"
  awk -v ds=$((s1 - s0)) -v dt=$((t1 - t0)) 'BEGIN { printf "%.1f", (dt > 0 ? 100 * ds / dt : 0) }'
}
