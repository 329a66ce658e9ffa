// fovea/analysis/randomization.hpp: the cascading parameter-randomisation sanity check of saliency
// maps (Adebayo et al. 2018, "Sanity checks for saliency maps"; REFERENCE §1.5: "cascading parameter
// randomisation must change the maps"). The parameters of a trained classifier are re-initialised
// block by block from the logits down, the maps are recomputed after each block, and each map is
// compared with the trained net's map by rank correlation and SSIM. A method whose maps survive the
// randomisation of the whole network explains the input, not the model.
//
// Pieces, usable on their own:
//   - spearman_correlation, ssim: the similarity metrics (definitions at each function);
//   - randomization_stages(net): the parameters grouped into blocks, listed top-down;
//   - randomize_stage(net, stage, seed): re-initialises one block (deterministic in the seed);
//   - snapshot_parameters / restore_parameters: the trained values back, bit for bit;
//   - cascading_randomization(net, attribute, images, targets, opt): the whole check.
//
// Devices: parameters may live on a CUDA device. Everything here goes through host copies (copy()
// between devices, synchronised before a host buffer is freed); no kernel is launched. The network
// is anything with `visit_parameters(prefix, f)`, f(const std::string& name, nn::Parameter&), e.g.
// models::Classifier; snapshots also cover `visit_buffers` (running statistics) when the net has it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fovea/analysis/attribution.hpp"  // AttributionMaps, signed_channel_sum
#include "fovea/core/error.hpp"
#include "fovea/core/random.hpp"
#include "fovea/core/stream.hpp"
#include "fovea/core/tensor.hpp"
#include "fovea/nn/layer.hpp"

namespace fovea::analysis {

// The Philox purpose of the re-initialisation draws. core/random.hpp's purposes are 0 .. 8; this
// one sits apart from them so that a purpose added there does not collide with it.
inline constexpr std::uint32_t kPurposeRandomization = 16;

// SSIM constants (Wang et al. 2004; skimage's defaults with gaussian_weights=True).
inline constexpr double kSsimSigma = 1.5;
inline constexpr int kSsimRadius = 5;  // int(3.5 * sigma + 0.5): an 11 x 11 window
inline constexpr double kSsimK1 = 0.01, kSsimK2 = 0.03;

namespace randomization_detail {

// Average ranks (1-based; tied values share the mean of their positions), like scipy's rankdata.
//   requires: no NaN in v.
inline std::vector<double> average_ranks(std::span<const float> v) {
  const std::size_t n = v.size();
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t i, std::size_t j) { return v[i] < v[j]; });
  std::vector<double> rank(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i + 1;
    while (j < n && v[order[j]] == v[order[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j - 1) + 1.0;  // mean of positions i+1 .. j
    for (std::size_t k = i; k < j; ++k) rank[order[k]] = r;
    i = j;
  }
  return rank;
}

inline bool any_nan(std::span<const float> v) {
  return std::any_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

// (v - min) / (max - min) in double; all 0 when max == min. Requires finite values.
inline std::vector<double> min_max_normalised(std::span<const float> v) {
  const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  const double l = *lo, range = double(*hi) - l;
  std::vector<double> out(v.size(), 0.0);
  if (range > 0)
    for (std::size_t i = 0; i < v.size(); ++i) out[i] = (double(v[i]) - l) / range;
  return out;
}

// Index into [0, n) under scipy.ndimage's mode 'reflect' (half-sample symmetric: d c b a | a b c d
// | d c b a, the edge value repeated), folded as often as needed.
inline std::int64_t symmetric_index(std::int64_t i, std::int64_t n) {
  const std::int64_t period = 2 * n;
  i %= period;
  if (i < 0) i += period;
  return i < n ? i : period - 1 - i;
}

// scipy.ndimage.gaussian_filter(x, sigma 1.5, truncate 3.5, mode 'reflect') of an (h, w) image:
// the normalised 11-tap kernel along axis 0 (rows), then along axis 1, in double.
inline std::vector<double> ssim_gaussian(const std::vector<double>& x, std::int64_t h, std::int64_t w) {
  double k[2 * kSsimRadius + 1], sum = 0;
  for (int d = -kSsimRadius; d <= kSsimRadius; ++d) {
    k[d + kSsimRadius] = std::exp(-0.5 * d * d / (kSsimSigma * kSsimSigma));
    sum += k[d + kSsimRadius];
  }
  for (double& v : k) v /= sum;
  std::vector<double> tmp(x.size()), out(x.size());
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t c = 0; c < w; ++c) {
      double s = 0;
      for (int d = -kSsimRadius; d <= kSsimRadius; ++d)
        s += k[d + kSsimRadius] * x[static_cast<std::size_t>(symmetric_index(y + d, h) * w + c)];
      tmp[static_cast<std::size_t>(y * w + c)] = s;
    }
  for (std::int64_t y = 0; y < h; ++y)
    for (std::int64_t c = 0; c < w; ++c) {
      double s = 0;
      for (int d = -kSsimRadius; d <= kSsimRadius; ++d)
        s += k[d + kSsimRadius] * tmp[static_cast<std::size_t>(y * w + symmetric_index(c + d, w))];
      out[static_cast<std::size_t>(y * w + c)] = s;
    }
  return out;
}

}  // namespace randomization_detail

// spearman_correlation: Spearman's rank correlation of a and b: the Pearson correlation of their
// average ranks (ties share the mean rank), as scipy.stats.spearmanr. Computed in double.
//   requires: a.size() == b.size() > 0 (else throws fovea::Error naming both sizes).
//   ensures: a value in [-1, 1]; NaN when either input is constant (its ranks have no spread; one
//   element is constant) or holds a NaN (scipy's nan_policy 'propagate'). Infinities are ranked.
inline double spearman_correlation(std::span<const float> a, std::span<const float> b) {
  FOVEA_CHECK(a.size() == b.size() && !a.empty(), "spearman_correlation: inputs of ", a.size(), " and ",
              b.size(), " values (need equal sizes > 0)");
  if (randomization_detail::any_nan(a) || randomization_detail::any_nan(b))
    return std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> ra = randomization_detail::average_ranks(a),
                            rb = randomization_detail::average_ranks(b);
  const double mean = 0.5 * (static_cast<double>(a.size()) + 1.0);  // the mean of any rank vector
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < ra.size(); ++i) {
    const double da = ra[i] - mean, db = rb[i] - mean;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa == 0 || sbb == 0) return std::numeric_limits<double>::quiet_NaN();
  return std::clamp(sab / std::sqrt(saa * sbb), -1.0, 1.0);
}

// ssim: the mean structural similarity (Wang et al. 2004) of two (height, width) maps, row-major.
// Definition, exactly skimage.metrics.structural_similarity(x, y, data_range=1, gaussian_weights=True,
// sigma=1.5, use_sample_covariance=False) on float64 copies of the normalised maps x, y:
//   1. x = (a - min a) / (max a - min a), likewise y from b (a constant map becomes all 0), so the
//      result is invariant to a positive affine rescaling of either map;
//   2. G(.) = scipy.ndimage.gaussian_filter(., sigma 1.5, truncate 3.5, mode 'reflect'): the kernel
//      exp(-d^2 / (2 sigma^2)), d = -5 .. 5, normalised to sum 1, applied along rows then columns,
//      borders mirrored with the edge pixel repeated;
//   3. mu_x = G(x), mu_y = G(y), v_x = G(x^2) - mu_x^2, v_y = G(y^2) - mu_y^2, c_xy = G(xy) - mu_x mu_y
//      (population covariances), C1 = (0.01)^2, C2 = (0.03)^2 (data range 1);
//   4. S = (2 mu_x mu_y + C1)(2 c_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(v_x + v_y + C2)) per pixel;
//   5. the mean of S over the pixels at least 5 from every border (skimage's crop of (11 - 1) / 2).
// The crop drops exactly the pixels whose window reaches past the border, so the border mode of step
// 2 never enters the result. Computed in double; the offline skimage values of the tests agree to
// 1e-12.
//   requires: height, width >= 11 (the window), a.size() == b.size() == height * width (else throws
//   fovea::Error naming the sizes).
//   ensures: 1 for identical maps; NaN when either map holds a non-finite value.
inline double ssim(std::span<const float> a, std::span<const float> b, std::int64_t height,
                   std::int64_t width) {
  const std::int64_t window = 2 * kSsimRadius + 1;
  FOVEA_CHECK(height >= window && width >= window, "ssim: maps of ", height, " x ", width,
              " are smaller than the ", window, " x ", window, " window");
  FOVEA_CHECK(static_cast<std::int64_t>(a.size()) == height * width &&
                  static_cast<std::int64_t>(b.size()) == height * width,
              "ssim: inputs of ", a.size(), " and ", b.size(), " values for ", height, " x ", width, " maps");
  const auto finite = [](std::span<const float> v) {
    return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
  };
  if (!finite(a) || !finite(b)) return std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> x = randomization_detail::min_max_normalised(a),
                            y = randomization_detail::min_max_normalised(b);
  std::vector<double> xx(x.size()), yy(x.size()), xy(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    xx[i] = x[i] * x[i];
    yy[i] = y[i] * y[i];
    xy[i] = x[i] * y[i];
  }
  const std::vector<double> ux = randomization_detail::ssim_gaussian(x, height, width),
                            uy = randomization_detail::ssim_gaussian(y, height, width),
                            uxx = randomization_detail::ssim_gaussian(xx, height, width),
                            uyy = randomization_detail::ssim_gaussian(yy, height, width),
                            uxy = randomization_detail::ssim_gaussian(xy, height, width);
  const double c1 = (kSsimK1 * 1.0) * (kSsimK1 * 1.0), c2 = (kSsimK2 * 1.0) * (kSsimK2 * 1.0);
  double sum = 0;
  for (std::int64_t r = kSsimRadius; r < height - kSsimRadius; ++r)
    for (std::int64_t c = kSsimRadius; c < width - kSsimRadius; ++c) {
      const auto i = static_cast<std::size_t>(r * width + c);
      const double vx = uxx[i] - ux[i] * ux[i], vy = uyy[i] - uy[i] * uy[i], vxy = uxy[i] - ux[i] * uy[i];
      const double a1 = 2 * ux[i] * uy[i] + c1, a2 = 2 * vxy + c2, b1 = ux[i] * ux[i] + uy[i] * uy[i] + c1,
                   b2 = vx + vy + c2;
      sum += (a1 * a2) / (b1 * b2);
    }
  return sum / static_cast<double>((height - 2 * kSsimRadius) * (width - 2 * kSsimRadius));
}

// ---- stages ------------------------------------------------------------------------------------

// One block of parameters randomised together: its name and its parameters' full names (in the
// net's visiting order).
struct RandomizationStage {
  std::string name;
  std::vector<std::string> parameters;
};

namespace randomization_detail {

// The block key of a parameter name: "layerK.i" for names "layerK.i.<rest>" (K all digits: a
// ResNet stage's residual block i), otherwise the first dot-separated component ("fc", "conv1",
// "bn1", "0").
inline std::string stage_key(std::string_view name) {
  const std::size_t first = name.find('.');
  if (first == std::string_view::npos) return std::string(name);
  const std::string_view head = name.substr(0, first);
  const bool layer_k = head.size() > 5 && head.starts_with("layer") &&
                       std::all_of(head.begin() + 5, head.end(), [](char c) { return c >= '0' && c <= '9'; });
  const std::size_t second = name.find('.', first + 1);
  if (layer_k && second != std::string_view::npos) return std::string(name.substr(0, second));
  return std::string(head);
}

struct ParameterInfo {
  std::string name;
  nn::ParamKind kind;
  Shape shape;
};

template <class Net>
std::vector<ParameterInfo> parameter_infos(Net& net) {
  std::vector<ParameterInfo> out;
  net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) {
    FOVEA_CHECK(p.defined(), "randomization: parameter ", name, " is not allocated (call setup first)");
    out.push_back({name, p.kind, p.value.shape()});
  });
  return out;
}

}  // namespace randomization_detail

// randomization_stages: the parameters of net grouped into blocks, listed top-down (the reverse of
// the visiting order: the logits' block first). The rule:
//   1. each parameter's key is "layerK.i" when its name starts with "layerK.i." (K digits), else
//      its first name component ("fc", "conv1", "bn1");
//   2. consecutive parameters (in visiting order) with the same key form a group named by the key;
//   3. a group holding only norm parameters (batch-norm gamma / beta) joins the group just before
//      it, keeping that group's name: a norm layer belongs to the layer it normalises.
// For a torchvision-layout ResNet-18 classifier this gives fc, layer4.1, layer4.0, layer3.1, ...,
// layer1.0, conv1 (the stem: conv1 + bn1); downsample shortcuts stay in their block.
//   requires: each key's parameters are consecutive in visiting order (else throws fovea::Error
//   naming the key); net set up (parameters allocated).
template <class Net>
std::vector<RandomizationStage> randomization_stages(Net& net) {
  const std::vector<randomization_detail::ParameterInfo> infos = randomization_detail::parameter_infos(net);
  struct Group {
    std::string key;
    std::vector<std::string> names;
    bool norm_only = true;
  };
  std::vector<Group> groups;
  for (const randomization_detail::ParameterInfo& p : infos) {
    std::string key = randomization_detail::stage_key(p.name);
    if (groups.empty() || groups.back().key != key) {
      for (const Group& g : groups)
        FOVEA_CHECK(g.key != key, "randomization_stages: the parameters of block ", key,
                    " are not consecutive in visiting order (", p.name, " comes after another block)");
      groups.push_back({std::move(key), {}, true});
    }
    groups.back().names.push_back(p.name);
    groups.back().norm_only = groups.back().norm_only && p.kind == nn::ParamKind::norm;
  }
  std::vector<RandomizationStage> stages;
  for (Group& g : groups) {
    if (g.norm_only && !stages.empty()) {
      for (std::string& n : g.names) stages.back().parameters.push_back(std::move(n));
    } else {
      stages.push_back({g.key, std::move(g.names)});
    }
  }
  std::reverse(stages.begin(), stages.end());
  return stages;
}

// ---- re-initialisation -------------------------------------------------------------------------

// randomize_stage: re-initialises the parameters of `stage` in place; the others and all buffers
// (running statistics) are untouched.
//   - kind weight or bias: N(0, sigma^2) element-wise, sigma = the population standard deviation of
//     the tensor's current values (so the scale of the trained layer is kept). When that is 0 or not
//     finite (a zero-initialised bias, a single element), sigma = sqrt(2 / fan_in) (He normal) with
//     fan_in = numel / shape[0] of the tensor, or for a bias of the sibling weight (the parameter
//     named like it with "bias" -> "weight") when there is one;
//   - kind norm: names ending in "weight" (batch-norm gamma) -> 1, ending in "bias" (beta) -> 0.
// Draws: element j of the parameter with visiting index i (over the whole net, from 0) is
// scale_normal(normal(key, j), 0, sigma), key = (seed, kPurposeRandomization, epoch 0, sample i,
// view 0): deterministic in (seed, parameter order), and two stages never share draws.
//   requires: every name of stage.parameters is a parameter of net (else throws fovea::Error naming
//   it); norm parameters named "...weight" / "...bias".
template <class Net>
void randomize_stage(Net& net, const RandomizationStage& stage, std::uint64_t seed) {
  const std::vector<randomization_detail::ParameterInfo> infos = randomization_detail::parameter_infos(net);
  for (const std::string& name : stage.parameters)
    FOVEA_CHECK(std::any_of(infos.begin(), infos.end(), [&](const auto& p) { return p.name == name; }),
                "randomize_stage: stage ", stage.name, " names ", name,
                ", which is not a parameter of the net");
  const auto fan_in_of = [&](const randomization_detail::ParameterInfo& p) -> double {
    const Shape* shape = &p.shape;
    if (p.kind == nn::ParamKind::bias && p.name.ends_with("bias")) {
      const std::string weight = p.name.substr(0, p.name.size() - 4) + "weight";
      for (const auto& q : infos)
        if (q.name == weight) shape = &q.shape;
    }
    const std::int64_t rows = shape->rank() >= 1 ? (*shape)[0] : 1;
    return rows > 0 ? static_cast<double>(std::max<std::int64_t>(shape->numel() / rows, 1)) : 1.0;
  };
  std::uint32_t index = 0;
  net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) {
    const std::uint32_t i = index++;
    if (std::find(stage.parameters.begin(), stage.parameters.end(), name) == stage.parameters.end()) return;
    const Shape shape = p.value.shape();
    std::vector<float> host(static_cast<std::size_t>(p.value.numel()));
    if (p.kind == nn::ParamKind::norm) {
      const bool gamma = name.ends_with("weight");
      FOVEA_CHECK(gamma || name.ends_with("bias"), "randomize_stage: norm parameter ", name,
                  " is neither a weight (gamma) nor a bias (beta)");
      std::fill(host.begin(), host.end(), gamma ? 1.0f : 0.0f);
    } else {
      FOVEA_CHECK(static_cast<std::uint64_t>(host.size()) <= kMaxStreamNormals, "randomize_stage: ", name,
                  " has ", host.size(), " elements, more than one random stream holds");
      copy(p.value.view(), View(host.data(), shape, Device::cpu()));
      double mean = 0;
      for (float v : host) mean += v;
      mean /= static_cast<double>(host.size());
      double var = 0;
      for (float v : host) var += (v - mean) * (v - mean);
      double sigma = std::sqrt(var / static_cast<double>(host.size()));
      if (!(sigma > 0) || !std::isfinite(sigma)) sigma = std::sqrt(2.0 / fan_in_of(infos[i]));
      const RandomKey key = make_key(seed, kPurposeRandomization, 0, i, 0);
      const auto s = static_cast<float>(sigma);
      for (std::size_t j = 0; j < host.size(); ++j) host[j] = scale_normal(normal(key, j), 0.0f, s);
    }
    copy(CView(host.data(), shape, Device::cpu()), p.value.view());
    synchronize(p.value.device());  // the host buffer must outlive a queued copy to a device
  });
}

// ---- snapshots ---------------------------------------------------------------------------------

// The values of every parameter (and, when the net has visit_buffers, every buffer: batch-norm
// running statistics) on the host, by name, in visiting order.
struct ParameterSnapshot {
  struct Entry {
    std::string name;
    Shape shape;
    std::vector<float> values;
  };
  std::vector<Entry> parameters, buffers;
};

namespace randomization_detail {

template <class Net>
concept HasBuffers = requires(Net& n, const std::string& p) {
  n.visit_buffers(p, nn::BufferVisitorArchetype{});
};

inline ParameterSnapshot::Entry snapshot_entry(const std::string& name, const Tensor& t) {
  FOVEA_CHECK(t.data() != nullptr, "snapshot_parameters: ", name, " is not allocated (call setup first)");
  return {name, t.shape(), t.to_vector()};
}

template <class Visit>
void restore_entries(const std::vector<ParameterSnapshot::Entry>& entries, const char* what, Visit&& visit) {
  // First check the whole net against the snapshot, so a mismatch changes nothing.
  std::size_t n = 0;
  visit([&](const std::string& name, Tensor& t) {
    FOVEA_CHECK(n < entries.size(), "restore_parameters: the net has more ", what, "s than the snapshot (",
                entries.size(), "); first extra: ", name);
    const ParameterSnapshot::Entry& e = entries[n++];
    FOVEA_CHECK(e.name == name && e.shape == t.shape() && t.data() != nullptr, "restore_parameters: ", what,
                " ", n - 1, " is ", name, " ", t.shape().str(), " in the net but ", e.name, " ",
                e.shape.str(), " in the snapshot");
  });
  FOVEA_CHECK(n == entries.size(), "restore_parameters: the snapshot has ", entries.size(), " ", what,
              "s, the net ", n);
  n = 0;
  visit([&](const std::string&, Tensor& t) {
    const ParameterSnapshot::Entry& e = entries[n++];
    copy(CView(e.values.data(), e.shape, Device::cpu()), t.view());
    synchronize(t.device());
  });
}

}  // namespace randomization_detail

// snapshot_parameters: host copies of the net's parameter values and buffers.
template <class Net>
ParameterSnapshot snapshot_parameters(Net& net) {
  ParameterSnapshot s;
  net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) {
    s.parameters.push_back(randomization_detail::snapshot_entry(name, p.value));
  });
  if constexpr (randomization_detail::HasBuffers<Net>)
    net.visit_buffers("", [&](const std::string& name, Tensor& t) {
      s.buffers.push_back(randomization_detail::snapshot_entry(name, t));
    });
  return s;
}

// restore_parameters: writes the snapshot's values back (bit for bit; gradients are not touched).
//   requires: the net's parameters and buffers have the snapshot's names and shapes in the same
//   order (else throws fovea::Error naming the first difference, before anything is written).
template <class Net>
void restore_parameters(Net& net, const ParameterSnapshot& snapshot) {
  randomization_detail::restore_entries(snapshot.parameters, "parameter", [&](auto&& f) {
    net.visit_parameters("", [&](const std::string& name, nn::Parameter& p) { f(name, p.value); });
  });
  if constexpr (randomization_detail::HasBuffers<Net>)
    randomization_detail::restore_entries(snapshot.buffers, "buffer",
                                          [&](auto&& f) { net.visit_buffers("", f); });
}

// ---- the check ---------------------------------------------------------------------------------

struct RandomizationOptions {
  std::uint64_t seed = 0;
  // Randomise only the first max_stages stages of the cascade (0: all of them).
  int max_stages = 0;
  // false (Adebayo's cascading check): stages accumulate, stage k's maps come from a net whose
  // stages 0 .. k are all randomised. true (their independent check): the trained values are
  // restored before each stage, so only stage k is randomised.
  bool independent = false;
  // Keep each stage's maps in RandomizationResult::maps (memory: one AttributionMaps per stage).
  bool keep_maps = false;
  // The cascade, top-down; empty: randomization_stages(net). Custom stages (e.g. one per layer)
  // are checked by randomize_stage; max_stages applies to them too.
  std::vector<RandomizationStage> stages = {};
};

// One map's similarity to the trained net's map of the same image (NaN where undefined: a constant
// map for the rank correlations, a non-finite value for either).
struct RandomizationScores {
  double heatmap_spearman = std::numeric_limits<double>::quiet_NaN();  // heatmap: sum_c |raw|
  double signed_spearman = std::numeric_limits<double>::quiet_NaN();   // signed_channel_sum
  double heatmap_ssim = std::numeric_limits<double>::quiet_NaN();      // ssim of the heatmaps
};

struct RandomizationResult {
  std::vector<RandomizationStage> stages;                // the stages randomised, in cascade order
  std::vector<std::vector<RandomizationScores>> scores;  // [stage][image]
  // [stage]: each score's mean over the images where it is defined (NaN if it is nowhere).
  std::vector<RandomizationScores> mean;
  AttributionMaps original;           // the trained net's maps
  std::vector<AttributionMaps> maps;  // [stage], only with keep_maps
};

namespace randomization_detail {

inline void check_same_layout(const AttributionMaps& m, const AttributionMaps& ref, const char* when) {
  FOVEA_CHECK(
      m.images == ref.images && m.channels == ref.channels && m.height == ref.height && m.width == ref.width,
      "cascading_randomization: the maps ", when, " are (", m.images, ", ", m.channels, ", ", m.height, ", ",
      m.width, "), the trained net's (", ref.images, ", ", ref.channels, ", ", ref.height, ", ", ref.width,
      ")");
  const auto hw = static_cast<std::size_t>(m.height * m.width);
  FOVEA_CHECK(m.heatmap.size() == static_cast<std::size_t>(m.images) * hw &&
                  m.raw.size() == static_cast<std::size_t>(m.images * m.channels) * hw,
              "cascading_randomization: maps ", when, " hold ", m.raw.size(), " raw and ", m.heatmap.size(),
              " heatmap values for (", m.images, ", ", m.channels, ", ", m.height, ", ", m.width, ")");
}

inline double mean_defined(const std::vector<RandomizationScores>& rows, double RandomizationScores::*field) {
  double sum = 0;
  std::int64_t n = 0;
  for (const RandomizationScores& r : rows)
    if (!std::isnan(r.*field)) {
      sum += r.*field;
      ++n;
    }
  return n > 0 ? sum / static_cast<double>(n) : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace randomization_detail

// cascading_randomization: Adebayo et al.'s cascading (or, with opt.independent, independent)
// parameter randomisation. `attribute(net, images, targets)` returns the AttributionMaps of the
// images (e.g. [](auto& n, CView x, std::span<const int> t) { return gradient(n, x, t); }). Steps:
//   1. maps0 = attribute(net) with the trained values (RandomizationResult::original);
//   2. for each stage k of randomization_stages(net) (or opt.stages; the first opt.max_stages, 0 =
//      all), in cascade
//      order: randomize_stage(net, stage k, opt.seed) on top of stages 0 .. k-1 (already randomised;
//      independent: on the trained values), maps_k = attribute(net), and per image n:
//        heatmap_spearman = spearman_correlation(maps0.heatmap_of(n), maps_k.heatmap_of(n)),
//        signed_spearman  = spearman_correlation of the signed channel sums,
//        heatmap_ssim     = ssim(maps0.heatmap_of(n), maps_k.heatmap_of(n), H, W) (H, W >= 11);
//   3. the trained parameter values and buffers are written back (restore_parameters), on every
//      exit path including an exception from attribute. The net's mode and input-gradient setting
//      are left as attribute leaves them.
//   requires: attribute gives maps of one layout (images, channels, H, W) every time; opt.max_stages
//   >= 0 (else throws fovea::Error).
template <class Net, class Attribute>
RandomizationResult cascading_randomization(Net& net, Attribute&& attribute, CView images,
                                            std::span<const int> targets,
                                            const RandomizationOptions& opt = {}) {
  FOVEA_CHECK(opt.max_stages >= 0, "cascading_randomization: max_stages must be >= 0, got ", opt.max_stages);
  RandomizationResult result;
  std::vector<RandomizationStage> stages = opt.stages.empty() ? randomization_stages(net) : opt.stages;
  if (opt.max_stages > 0 && static_cast<std::size_t>(opt.max_stages) < stages.size())
    stages.resize(static_cast<std::size_t>(opt.max_stages));
  const ParameterSnapshot trained = snapshot_parameters(net);
  try {
    result.original = attribute(net, images, targets);
    const AttributionMaps& m0 = result.original;
    randomization_detail::check_same_layout(m0, m0, "of the trained net");
    const std::vector<float> signed0 = signed_channel_sum(m0);
    const auto hw = static_cast<std::size_t>(m0.height * m0.width);
    for (const RandomizationStage& stage : stages) {
      if (opt.independent) restore_parameters(net, trained);
      randomize_stage(net, stage, opt.seed);
      AttributionMaps m = attribute(net, images, targets);
      randomization_detail::check_same_layout(m, m0, ("after randomising " + stage.name).c_str());
      const std::vector<float> signed_k = signed_channel_sum(m);
      std::vector<RandomizationScores> rows(static_cast<std::size_t>(m0.images));
      for (std::int64_t n = 0; n < m0.images; ++n) {
        const std::span<const float> s0(signed0.data() + n * static_cast<std::int64_t>(hw), hw),
            sk(signed_k.data() + n * static_cast<std::int64_t>(hw), hw);
        RandomizationScores& r = rows[static_cast<std::size_t>(n)];
        r.heatmap_spearman = spearman_correlation(m0.heatmap_of(n), m.heatmap_of(n));
        r.signed_spearman = spearman_correlation(s0, sk);
        r.heatmap_ssim = ssim(m0.heatmap_of(n), m.heatmap_of(n), m0.height, m0.width);
      }
      result.mean.push_back({randomization_detail::mean_defined(rows, &RandomizationScores::heatmap_spearman),
                             randomization_detail::mean_defined(rows, &RandomizationScores::signed_spearman),
                             randomization_detail::mean_defined(rows, &RandomizationScores::heatmap_ssim)});
      result.scores.push_back(std::move(rows));
      if (opt.keep_maps) result.maps.push_back(std::move(m));
    }
  } catch (...) {
    restore_parameters(net, trained);
    throw;
  }
  restore_parameters(net, trained);
  result.stages = std::move(stages);
  return result;
}

}  // namespace fovea::analysis
