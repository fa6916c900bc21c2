#!/bin/sh
sbatch --parsable --job-name=tok-a1 --array=0-2%2 --output=/data/ana/.fairbig/work/runs/20260101-120000-slurm/slurm-%A_%a.out /data/ana/.fairbig/work/runs/20260101-120000-slurm/job.sh --array /data/ana/.fairbig/work/runs/20260101-120000-slurm/jobs.txt 0 1 tok-a1
sbatch --parsable --job-name=tok-b2 --array=0-1%2 --time=05:00:00 --output=/data/ana/.fairbig/work/runs/20260101-120000-slurm/slurm-%A_%a.out /data/ana/.fairbig/work/runs/20260101-120000-slurm/job.sh --array /data/ana/.fairbig/work/runs/20260101-120000-slurm/jobs.txt 3 2 tok-b2
