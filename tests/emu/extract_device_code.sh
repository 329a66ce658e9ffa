#!/bin/sh
# tests/emu/extract_device_code.sh KERNELS_DIR OUT_DIR: copies the device code of kernels/*.cuh that
# the emulation tests run into OUT_DIR/*.inc, cut at comment and declaration lines of those headers
# (named below; renaming one of them breaks this on purpose, loudly: the emulation tests then fail to
# compile or find an empty section). Only `extern __shared__` declarations are rewritten, to the
# emulator's per-block buffer.
set -eu
k=$1
out=$2
mkdir -p "$out"
smem='s/extern __shared__ \(float4\|float\) \([a-z0-9_]*\)\[\];/\1* \2 = reinterpret_cast<\1*>(::fovea::emu::emu_smem());/'

section() {  # section FILE START_REGEX END_REGEX: lines from START through END (inclusive)
  sed -n "/$2/,/$3/p" "$1"
}
check() {  # check FILE: fail when a section came out empty
  [ -s "$1" ] || { echo "extract_device_code.sh: nothing extracted into $1" >&2; exit 1; }
}

# augment.cuh: the stage enum, kMeanChunks and kMeanUnroll, DevicePlan, and every kernel with its helpers from the
# pixel tiling and geometry up to the host side (not the allocation helpers between them).
{
  section "$k/augment.cuh" '^enum AugmentStage' '^};'
  sed -n '/^inline constexpr int kMean\(Chunks\|Unroll\)/p' "$k/augment.cuh"
  section "$k/augment.cuh" '^struct DevicePlan {' '^};'
  section "$k/augment.cuh" '^\/\/ pixel_kernel.s tiling:' '^\/\/ Runs the pixel stages' | sed '$d'
} | sed "$smem" > "$out/augment_device.inc"
check "$out/augment_device.inc"

# contrastive.cuh: the fp32 tiles and every kernel (NT-Xent, InfoNCE, accuracy, the queue), up to
# the host side.
section "$k/contrastive.cuh" '^constexpr int kCtTile = 64;' '^\/\/ Row tiles, column tiles and column splits' |
  sed '$d' | sed "$smem" > "$out/contrastive_device.inc"
check "$out/contrastive_device.inc"

# optim.cuh: the multi-tensor kernels and their helpers, up to the host side.
section "$k/optim.cuh" '^__device__ __forceinline__ float4 load4' '^inline unsigned chunk_grid' | sed '$d' \
  > "$out/optim_device.inc"
check "$out/optim_device.inc"

# contrastive_tc.cuh: tiles, kernels and launch-shape helpers, the normalisation kernel; from
# contrastive.cuh the warp sum, the row helpers (ct_load4, ct_store4, ct_aligned16), the finish of a
# row (ct_finish_row4) and the finish kernel the tensor-core backward reuses.
{
  section "$k/contrastive.cuh" '^__device__ __forceinline__ float ct_warp_sum' '^}'
  section "$k/contrastive.cuh" '^\/\/ Four consecutive floats at p' '^\/\/ acc\[r\]\[c\] = a\[r0' | sed '$d'
  section "$k/contrastive.cuh" '^\/\/ Dims per lane-chunk of ct_finish_row4' '^}'
  section "$k/contrastive_tc.cuh" '^\/\/ ---- tiles ----' '^\/\/ ---- host side ----'
  section "$k/contrastive_tc.cuh" '^\/\/ One warp per row i: zn_i' '^\/\/ Whether the tensor-core kernels run'
  section "$k/contrastive.cuh" '^\/\/ One warp per row i: dzhat = scale' '^}'
} | sed "$smem" > "$out/contrastive_tc_device.inc"
check "$out/contrastive_tc_device.inc"

# corruptions.cuh: the device plan, every kernel and its helpers, up to the host side.
section "$k/corruptions.cuh" '^\/\/ The plan on the device\.' '^\/\/ ---- host side ----' | sed '$d' \
  > "$out/corruptions_device.inc"
check "$out/corruptions_device.inc"

# lrp.cuh: the mean-share kernel (the maps run elementwise.cuh's generic kernel).
section "$k/lrp.cuh" '^\/\/ One warp per plane of n values' '^}' > "$out/lrp_device.inc"
check "$out/lrp_device.inc"

# gram.cuh: the column statistics and block kernels (the Gram itself is cublasDsyrk's).
section "$k/gram.cuh" '^\/\/ Per column c of x (n rows' '^\/\/ Columns per block' | sed '$d' > "$out/gram_device.inc"
check "$out/gram_device.inc"
