# Sourced on the GPU machine from the project's root (a copy of ../shared/gpu/env.sh, which does not
# travel there): installs onnxruntime-gpu from the four parts sent to /tmp/parts into /tmp/site once,
# makes gen importable from this checkout without pip, puts `gen` on PATH.
if [ ! -d /tmp/site/onnxruntime ]; then
  cat /tmp/parts/part0* > /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    /tmp/onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl
fi
mkdir -p /tmp/src/gen /tmp/bin
for p in trainer exporters runtime cli pipelines serving; do ln -sfn "$PWD/$p" "/tmp/src/gen/$p"; done
for f in api/*.py; do ln -sfn "$PWD/$f" "/tmp/src/gen/$(basename "$f")"; done  # api/ is gen itself
printf '#!/usr/bin/env python3\nimport sys\nfrom gen.cli.main import main\nsys.exit(main())\n' > /tmp/bin/gen
chmod +x /tmp/bin/gen
export PYTHONPATH=/tmp/src:/tmp/site PATH=/tmp/bin:$PATH PYTHONUNBUFFERED=1
python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())"
