#!/usr/bin/env bash
# Run the commands of one section of book/results/commands.sh (the one list of runs), in order, from the
# repository root, and copy each finished training run's history.json into book/results/<run name>.json.
#   bash scripts/run_commands.sh cpu            # every command of the "cpu" section
#   bash scripts/run_commands.sh gpu bn96       # only the gpu commands whose line contains "bn96"
#   DRY=1 bash scripts/run_commands.sh gpu      # print the commands instead of running them
# An interrupted run continues where it stopped: run its command again with --resume added.
set -euo pipefail
cd "$(dirname "$0")/.."
section=${1:?usage: run_commands.sh cpu|gpu [substring]}
filter=${2:-}
list=book/results/commands.sh
mapfile -t commands < <(awk -v s="# == $section:" 'index($0, s) == 1 {on = 1; next} /^# == / {on = 0} on && NF && !/^#/' "$list")
[ "${#commands[@]}" -gt 0 ] || { echo "no commands in section '$section' of $list" >&2; exit 2; }
export INCEPTION_LIB_PROGRESS=${INCEPTION_LIB_PROGRESS:-0} PYTHONUNBUFFERED=1
for command in "${commands[@]}"; do
  [[ -z "$filter" || "$command" == *"$filter"* ]] || continue
  echo "+ $command"
  [ "${DRY:-0}" = 1 ] && continue
  t0=$(date +%s)
  eval "$command"
  if [[ "$command" == *" train "* ]]; then
    out=$(sed -E 's/.*--out ([^ ]+).*/\1/' <<< "$command")
    cp "$out/history.json" "book/results/$(basename "$out").json"
  fi
  echo "done in $(( $(date +%s) - t0 )) s"
done
