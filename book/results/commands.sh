# Every run this book reports or proposes, one command per line: the one list that chapter 5 shows (checked
# against the command-line parser), that this folder's README refers to, and that scripts/run_commands.sh runs.
# Options not given keep the TrainConfig defaults (python -m inception_lib train --help lists them).

# == cpu: the recorded runs, on two CPU cores (each one from a clean checkout of the commit its record names)
python -m inception_lib train --variant bn --resolution 80 --epochs 8 --schedule cosine --aux-weight 0.3 --precision bf16 --channels-last --threads 2 --test --seed 0 --out runs/fmnist-bn80-aux0.3-pytorch-s0
python -m inception_lib train --variant bn --resolution 80 --epochs 8 --schedule cosine --aux-weight 0.3 --precision bf16 --channels-last --threads 2 --test --seed 1 --out runs/fmnist-bn80-aux0.3-pytorch-s1
python -m inception_lib train --variant bn --aux-weight 0.3 --seed 0 --resolution 80 --epochs 3 --subset 20000 --schedule cosine --precision bf16 --channels-last --threads 2 --test --out runs/fmnist-bn80sub-aux0.3-pytorch-s0
python -m inception_lib train --variant bn --aux-weight 0 --aux-heads --seed 0 --resolution 80 --epochs 3 --subset 20000 --schedule cosine --precision bf16 --channels-last --threads 2 --test --out runs/fmnist-bn80sub-aux0heads-pytorch-s0
python -m inception_lib train --variant bn --aux-weight 0.3 --seed 1 --resolution 80 --epochs 3 --subset 20000 --schedule cosine --precision bf16 --channels-last --threads 2 --test --out runs/fmnist-bn80sub-aux0.3-pytorch-s1
python -m inception_lib train --variant bn --aux-weight 0 --aux-heads --seed 1 --resolution 80 --epochs 3 --subset 20000 --schedule cosine --precision bf16 --channels-last --threads 2 --test --out runs/fmnist-bn80sub-aux0heads-pytorch-s1
python -m inception_lib train --variant paper --aux-weight 0.3 --seed 0 --resolution 80 --epochs 3 --subset 20000 --schedule cosine --precision bf16 --channels-last --threads 2 --test --lr 0.02 --warmup-epochs 0.5 --out runs/fmnist-paper80sub-aux0.3-pytorch-s0
python -m inception_lib table3 runs/fmnist-bn80-aux0.3-pytorch-s0/last.pt runs/fmnist-bn80-aux0.3-pytorch-s1/last.pt --names s0,s1 --n 300 --threads 1 --out book/results/table3/flip80.json
python -m inception_lib export-weights runs/fmnist-bn80-aux0.3-pytorch-s1 --name fashion_mnist --record book/results/fmnist-bn80-aux0.3-pytorch-s1.json

# == gpu: proposed runs for a machine with an NVIDIA GPU (not yet recorded)
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --seed 0 --test --out runs/fmnist-bn96-aux0.3-pytorch-s0
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --seed 1 --test --out runs/fmnist-bn96-aux0.3-pytorch-s1
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --seed 2 --test --out runs/fmnist-bn96-aux0.3-pytorch-s2
python -m inception_lib train --framework keras --variant bn --resolution 96 --epochs 30 --seed 0 --test --out runs/fmnist-bn96-aux0.3-keras-s0
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --aux-weight 0 --aux-heads --seed 0 --test --out runs/fmnist-bn96-aux0heads-pytorch-s0
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --aux-weight 0 --aux-heads --seed 1 --test --out runs/fmnist-bn96-aux0heads-pytorch-s1
python -m inception_lib train --variant bn --resolution 96 --epochs 30 --aux-weight 0 --aux-heads --seed 2 --test --out runs/fmnist-bn96-aux0heads-pytorch-s2
python -m inception_lib train --variant paper --resolution 96 --epochs 30 --lr 0.01 --warmup-epochs 2 --seed 0 --test --out runs/fmnist-paper96-aux0.3-pytorch-s0
python -m inception_lib train --variant bn --resolution 224 --epochs 30 --seed 0 --test --out runs/fmnist-bn224-aux0.3-pytorch-s0
python -m inception_lib train --dataset cifar10 --data-root DATA --variant bn --resolution 224 --epochs 25 --seed 0 --test --out runs/cifar10-bn224-aux0.3-pytorch-s0
torchrun --standalone --nproc_per_node 4 -m inception_lib train --variant bn --resolution 224 --epochs 30 --batch-size 512 --lr 0.2 --warmup-epochs 2 --seed 0 --test --out runs/fmnist-bn224-aux0.3-pytorch-4gpu-s0
