// examples/02_explain.cpp: explain a DR classifier's decisions on synthetic fundus images and score
// the maps against the lesion masks with the analysis API: what `fovea saliency` does, in a program
// of your own. Run:
//   build/default/examples/example_02_explain [--weights FILE] [--device cuda] [--images N]
// FILE: a ResNet-18 (width 0.25, small stem, 5 grades) as `scripts/study` leaves it in
// runs/study/finetune_simclr/best.safetensors. Without one the network keeps its random
// initialisation, and its maps score near the chance level printed last. Exit status 77 (a test
// harness's "skipped") when --device cuda is asked for and no CUDA device can be used.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fovea/analysis/attribution.hpp>
#include <fovea/analysis/gradcam.hpp>
#include <fovea/analysis/lrp.hpp>
#include <fovea/analysis/saliency_scores.hpp>
#include <fovea/data/synthetic.hpp>
#include <fovea/fovea.hpp>
#include <fovea/models/resnet.hpp>
#include <fovea/nn/summary.hpp>
#include <fovea/nn/weights.hpp>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  using namespace fovea;
  std::string weights, device_name = "cpu";
  std::int64_t n = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--weights") weights = value;
    else if (flag == "--device") device_name = value;
    else if (flag == "--images") n = std::stoll(value);
    else {
      std::fprintf(stderr, "unknown flag %s (--weights FILE, --device cpu|cuda, --images N)\n", flag.c_str());
      return 2;
    }
  }
  try {
    const Device device = Device::parse(device_name);
    if (device.is_cuda() && !cuda_available()) {
      std::fprintf(stderr, "no CUDA device: %s\n", cuda_unavailable_reason().c_str());
      return 77;
    }
    FOVEA_CHECK(n >= 1 && n <= 64, "--images must be 1..64, got ", n);
    constexpr int kSize = 64;  // the main job's image size
    const std::int64_t hw = std::int64_t{kSize} * kSize;

    // Grade-3 synthetic fundus images (many lesions), normalised with the DR statistics; per image the
    // union of the microaneurysm, haemorrhage and exudate masks, and the field of view.
    const data::SyntheticConfig config{.seed = 2026, .size = kSize};
    Tensor images(Shape{n, 3, kSize, kSize});
    std::vector<std::uint8_t> lesions(static_cast<std::size_t>(n * hw)), fov(lesions.size());
    for (std::int64_t k = 0; k < n; ++k) {
      const data::SyntheticFundus f = data::generate_fundus(config, k, 3);
      for (int c = 0; c < 3; ++c)
        for (std::int64_t p = 0; p < hw; ++p)
          images.data()[(k * 3 + c) * hw + p] =
              (f.image.data()[c * hw + p] - kDrStats.mean[c]) / kDrStats.std[c];
      for (std::int64_t p = 0; p < hw; ++p) {
        const auto i = static_cast<std::size_t>(k * hw + p);
        for (const data::LesionType t : {data::LesionType::MA, data::LesionType::HE, data::LesionType::EX})
          lesions[i] |= f.mask(t).data()[p] != 0.0f;
        const float dx = static_cast<float>(p % kSize) + 0.5f - f.fov_x,
                    dy = static_cast<float>(p / kSize) + 0.5f - f.fov_y;
        fov[i] = std::sqrt(dx * dx + dy * dy) <= f.fov_radius;
      }
    }
    const Tensor on_device = images.to(device);

    models::ResNet18 net{models::ResNetConfig{.num_classes = 5, .width = 0.25f, .small_stem = true}};
    net.setup(images.shape(), device);
    nn::initialize(net, 1);
    if (!weights.empty()) std::printf("weights: %s\n", nn::load_weights(net, weights).str().c_str());
    net.set_training(false);

    // Explain each image's predicted grade.
    const CView out = net.forward(on_device);  // (N, 5) logits, on the device
    std::vector<float> logits(static_cast<std::size_t>(out.numel()));
    copy(out, View(logits.data(), out.shape(), Device::cpu()));
    std::vector<int> targets(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < n; ++k)
      for (int g = 1; g < 5; ++g)
        if (logits[static_cast<std::size_t>(k * 5 + g)] >
            logits[static_cast<std::size_t>(k * 5 + targets[k])])
          targets[static_cast<std::size_t>(k)] = g;

    using namespace fovea::analysis;
    struct Method {
      const char* name;
      AttributionMaps maps;
    };
    const std::vector<Method> methods{
        {"gradient", gradient(net, on_device, targets)},
        {"integrated gradients", integrated_gradients(net, on_device, targets, {.steps = 16})},
        {"Grad-CAM (layer3)", grad_cam(net, on_device, targets, {.layer = "layer3"})},
        {"LRP (eps / z+ / z^B)", lrp(net, on_device, targets)},
    };

    // Mass inside the lesions and rank accuracy, averaged over the images, inside the field of view.
    std::printf("%-22s %12s %14s\n", "method", "mass inside", "rank accuracy");
    for (const Method& m : methods) {
      double mass = 0, rank = 0;
      for (std::int64_t k = 0; k < n; ++k) {
        const auto at = static_cast<std::size_t>(k * hw);
        const SaliencyScores s =
            score_heatmap(Heatmap{m.maps.heatmap_of(k), kSize, kSize},
                          Mask{{lesions.data() + at, static_cast<std::size_t>(hw)}, kSize, kSize},
                          Mask{{fov.data() + at, static_cast<std::size_t>(hw)}, kSize, kSize});
        mass += s.mass_inside / static_cast<double>(n);
        rank += s.rank_accuracy / static_cast<double>(n);
      }
      std::printf("%-22s %12.3f %14.3f\n", m.name, mass, rank);
    }
    double chance = 0;  // a map uniform over the field of view: lesion pixels / field-of-view pixels
    for (std::int64_t k = 0; k < n; ++k) {
      std::int64_t in = 0, all = 0;
      for (std::int64_t p = 0; p < hw; ++p) {
        const auto i = static_cast<std::size_t>(k * hw + p);
        all += fov[i];
        in += fov[i] && lesions[i];
      }
      chance += static_cast<double>(in) / static_cast<double>(all) / static_cast<double>(n);
    }
    std::printf("%-22s %12.3f %14.3f\n", "chance", chance, chance);
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
