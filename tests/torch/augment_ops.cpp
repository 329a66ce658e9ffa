// tests/torch/augment_ops.cpp: fovea_augment_ops, the fovea half of the torchvision cross-check of
// the augmentation ops (check_augment.py): runs every op of ops/augment.hpp on a batch with the
// per-sample parameters it is given and writes each op's result.
//
// Usage: fovea_augment_ops --input X.safetensors --device cpu|cuda[:n] --out O.safetensors
// X holds "x" (N, 3, H, W), "params" (N, 23): one row of AugmentParams fields per sample, as floats,
// in the column order of kColumns below; "stats" (2, 3): normalisation means and stds; "size" (1):
// the output side S of the geometric ops.
// O holds "geometry" (random_resized_crop_flip, N x 3 x S x S), "color_jitter", "grayscale",
// "gaussian_blur", "solarize" (each N x 3 x H x W, on x), "normalize" (normalize_channels on x) and
// "pipeline" (augment_images, N x 3 x S x S).
//
// Draw mode: fovea_augment_ops --draw simclr|moco_v2 --count N --height H --width W --size S --seed K
//   --out O.safetensors writes "params" (N, 23): data::draw_batch_params of the preset for samples
//   0 .. N - 1 of H x W images (epoch 0, view 0), in the same columns, for the comparison of the
//   parameter distributions with torchvision's samplers.
// Exit status: 0 done, 77 the device cannot be used (skip), 2 bad arguments, 1 any other error
// (bad parameters included: fovea's own message names the sample and the field).
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fovea/core/device.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/ops/augment.hpp"

namespace {

constexpr int kExitSkip = 77;
constexpr int kExitUsage = 2;

// The columns of "params", in order (check_augment.py writes the same list).
constexpr std::array<std::string_view, 23> kColumns = {
    "crop_top", "crop_left",         "crop_height", "crop_width", "hflip",  "vflip",       "rotation_degrees",
    "jitter",   "jitter_ops",        "order0",      "order1",     "order2", "order3",      "brightness",
    "contrast", "saturation",        "hue",         "grayscale",  "blur",   "blur_kernel", "blur_sigma",
    "solarize", "solarize_threshold"};

struct Options {
  std::string input, out, device = "cpu";
  std::string draw, count, height, width, size, seed;  // draw mode
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(
      stderr,
      "fovea_augment_ops: %s\nusage: fovea_augment_ops --input X.safetensors --device cpu|cuda "
      "--out O.safetensors\n   or: fovea_augment_ops --draw simclr|moco_v2 --count N --height H --width W "
      "--size S --seed K --out O.safetensors\n",
      problem.c_str());
  std::exit(kExitUsage);
}

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string_view, std::string*> strings = {
      {"--input", &o.input}, {"--out", &o.out},     {"--device", &o.device},
      {"--draw", &o.draw},   {"--count", &o.count}, {"--height", &o.height},
      {"--width", &o.width}, {"--size", &o.size},   {"--seed", &o.seed}};
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (i + 1 >= argc) usage("missing value after " + std::string(flag));
    const auto it = strings.find(flag);
    if (it == strings.end()) usage("unknown argument '" + std::string(flag) + "'");
    *it->second = argv[++i];
  }
  if (o.out.empty() || (o.input.empty() && o.draw.empty())) usage("--out and --input or --draw are required");
  return o;
}

const fovea::io::StoredTensor& stored(const fovea::io::SafeTensors& file, const std::string& name,
                                      const std::string& path) {
  const auto it = file.tensors.find(name);
  FOVEA_CHECK(it != file.tensors.end(), path, " has no tensor \"", name, "\"");
  return it->second;
}

// A field of a params row as an integer of type T, refusing values that are not whole or out of range.
template <class T>
T whole(float v, std::int64_t lo, std::int64_t hi, std::size_t sample, std::string_view column) {
  FOVEA_CHECK(
      std::isfinite(v) && v == std::floor(v) && v >= static_cast<float>(lo) && v <= static_cast<float>(hi),
      "params row ", sample, ": ", column, " = ", v, " is not a whole number in [", lo, ", ", hi, "]");
  return static_cast<T>(v);
}

std::vector<fovea::AugmentParams> params_of(const fovea::Tensor& table) {
  FOVEA_CHECK(table.shape().rank() == 2 && table.shape()[1] == static_cast<std::int64_t>(kColumns.size()),
              "\"params\" must be (N, ", kColumns.size(), "), got ", table.shape().str());
  std::vector<fovea::AugmentParams> out(static_cast<std::size_t>(table.shape()[0]));
  const float* v = table.data();
  constexpr std::int64_t kInt = 1 << 24;  // floats hold every integer up to here exactly
  for (std::size_t n = 0; n < out.size(); ++n, v += kColumns.size()) {
    fovea::AugmentParams& p = out[n];
    const auto i32 = [&](int c) { return whole<std::int32_t>(v[c], -kInt, kInt, n, kColumns[c]); };
    const auto u8 = [&](int c) { return whole<std::uint8_t>(v[c], 0, 255, n, kColumns[c]); };
    p.crop_top = i32(0), p.crop_left = i32(1), p.crop_height = i32(2), p.crop_width = i32(3);
    p.hflip = u8(4), p.vflip = u8(5);
    p.rotation_degrees = v[6];
    p.jitter = u8(7), p.jitter_ops = u8(8);
    for (int k = 0; k < fovea::kJitterOps; ++k) p.order[k] = u8(9 + k);
    p.brightness = v[13], p.contrast = v[14], p.saturation = v[15], p.hue = v[16];
    p.grayscale = u8(17);
    p.blur = u8(18), p.blur_kernel = i32(19), p.blur_sigma = v[20];
    p.solarize = u8(21), p.solarize_threshold = v[22];
  }
  return out;
}

// A positive integer argument of draw mode, at most `most`.
std::int64_t positive(const std::string& flag, const std::string& value, std::int64_t most) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < 1 || v > most) usage("bad " + flag + " '" + value + "'");
  return v;
}

// Draw mode: the preset's parameters for samples 0 .. count - 1, one row each.
void draw(const Options& o) {
  using namespace fovea;
  const std::int64_t count = positive("--count", o.count, 1 << 22),
                     height = positive("--height", o.height, 1 << 14),
                     width = positive("--width", o.width, 1 << 14),
                     size = positive("--size", o.size, 1 << 14);
  const auto seed = static_cast<std::uint64_t>(positive("--seed", o.seed.empty() ? "1" : o.seed, 1ll << 62));
  data::AugmentConfig config;
  if (o.draw == "simclr") config = data::simclr(static_cast<int>(size));
  else if (o.draw == "moco_v2") config = data::moco_v2(static_cast<int>(size));
  else usage("--draw must be simclr or moco_v2, got '" + o.draw + "'");
  std::vector<std::int64_t> ids(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) ids[static_cast<std::size_t>(i)] = i;
  const std::vector<AugmentParams> params = data::draw_batch_params(config, ids, 0, 0, seed, height, width);
  Tensor table(Shape{count, static_cast<std::int64_t>(kColumns.size())}, Device::cpu());
  float* v = table.data();
  for (const AugmentParams& p : params) {
    const float row[] = {static_cast<float>(p.crop_top),
                         static_cast<float>(p.crop_left),
                         static_cast<float>(p.crop_height),
                         static_cast<float>(p.crop_width),
                         static_cast<float>(p.hflip),
                         static_cast<float>(p.vflip),
                         p.rotation_degrees,
                         static_cast<float>(p.jitter),
                         static_cast<float>(p.jitter_ops),
                         static_cast<float>(p.order[0]),
                         static_cast<float>(p.order[1]),
                         static_cast<float>(p.order[2]),
                         static_cast<float>(p.order[3]),
                         p.brightness,
                         p.contrast,
                         p.saturation,
                         p.hue,
                         static_cast<float>(p.grayscale),
                         static_cast<float>(p.blur),
                         static_cast<float>(p.blur_kernel),
                         p.blur_sigma,
                         static_cast<float>(p.solarize),
                         p.solarize_threshold};
    static_assert(sizeof(row) / sizeof(row[0]) == kColumns.size());
    for (const float x : row) *v++ = x;
  }
  io::write_safetensors(o.out, {{"params", table.cview()}}, {{"preset", o.draw}});
  std::printf("fovea_augment_ops: %lld %s draws for %lldx%lld -> %lld px, wrote %s\n",
              static_cast<long long>(count), o.draw.c_str(), static_cast<long long>(height),
              static_cast<long long>(width), static_cast<long long>(size), o.out.c_str());
}

fovea::Tensor host_copy(fovea::CView v) {
  fovea::Tensor t(v.shape(), fovea::Device::cpu());
  fovea::copy(v, t.view());
  return t;
}

void run(const Options& o, fovea::Device device) {
  using namespace fovea;
  const io::SafeTensors input = io::read_safetensors(o.input);
  const Tensor x = io::to_tensor(stored(input, "x", o.input), device);
  FOVEA_CHECK(x.shape().rank() == 4 && x.shape().c() == 3, o.input, ": \"x\" must be (N, 3, H, W), got ",
              x.shape().str());
  const Tensor table = io::to_tensor(stored(input, "params", o.input), Device::cpu());
  const std::vector<AugmentParams> params = params_of(table);
  const Tensor stats_t = io::to_tensor(stored(input, "stats", o.input), Device::cpu());
  FOVEA_CHECK(stats_t.shape() == (Shape{2, 3}), o.input, ": \"stats\" must be (2, 3), got ",
              stats_t.shape().str());
  ChannelStats stats;
  for (int c = 0; c < 3; ++c) stats.mean[c] = stats_t.data()[c], stats.std[c] = stats_t.data()[3 + c];
  const Tensor size_table = io::to_tensor(stored(input, "size", o.input), Device::cpu());
  FOVEA_CHECK(size_table.numel() == 1, o.input, ": \"size\" must hold one value");
  const auto S = whole<std::int64_t>(size_table.data()[0], 1, 1 << 14, 0, "size");
  const std::int64_t N = x.shape().n();

  std::map<std::string, Tensor> results;
  const auto run_pixel = [&](const std::string& name, auto op) {
    Tensor out(x.shape(), device);
    op(x.cview(), out.view());
    results[name] = host_copy(out.cview());
  };
  run_pixel("color_jitter", [&](CView a, View b) { color_jitter(a, params, b); });
  run_pixel("grayscale", [&](CView a, View b) { grayscale(a, params, b); });
  run_pixel("gaussian_blur", [&](CView a, View b) { gaussian_blur(a, params, b); });
  run_pixel("solarize", [&](CView a, View b) { solarize(a, params, b); });
  run_pixel("normalize", [&](CView a, View b) { normalize_channels(a, stats, b); });
  Tensor geometry(Shape{N, 3, S, S}, device);
  random_resized_crop_flip(x, params, geometry);
  results["geometry"] = host_copy(geometry.cview());
  Tensor pipeline(Shape{N, 3, S, S}, device);
  augment_images(x, params, stats, pipeline);
  results["pipeline"] = host_copy(pipeline.cview());

  std::map<std::string, CView> views;
  for (const auto& [name, t] : results) views.emplace(name, t.cview());
  io::write_safetensors(o.out, views, {{"device", device.str()}});
  std::printf("fovea_augment_ops: %lld samples %s -> %lld px on %s, wrote %zu tensors to %s\n",
              static_cast<long long>(N), x.shape().str().c_str(), static_cast<long long>(S),
              device.str().c_str(), views.size(), o.out.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    const fovea::Device device = fovea::Device::parse(o.device);
    if (device.is_cuda() && !fovea::cuda_available()) {
      std::printf("fovea_augment_ops: SKIP: no usable CUDA device: %s\n",
                  fovea::cuda_unavailable_reason().c_str());
      return kExitSkip;
    }
    if (!o.draw.empty()) draw(o);
    else run(o, device);
    if (device.is_cuda()) fovea::synchronize(device);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fovea_augment_ops: error: %s\n", e.what());
    return 1;
  }
}
