// tools/fovea/main.cpp: the `fovea` command-line program: model summaries (`fovea summary`), randomly
// initialised torchvision-keyed weights (`fovea init`), classification of image files with a
// safetensors checkpoint (`fovea predict`, JSON output), per-layer feature statistics
// (`fovea features`, cmd_features.hpp) and paired comparisons of two evaluations (`fovea compare`,
// cmd_compare.hpp). docs/cli.md documents every flag.
//
// Exit codes: 0 success; 1 a run failed (unreadable image or weights, weights that do not fit the
// model, no CUDA device, unwritable output); 2 the command line is wrong (unknown subcommand or flag,
// bad value, missing required flag).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <new>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cmd_compare.hpp"
#include "cmd_drivers.hpp"
#include "cmd_features.hpp"
#include "cmd_generate.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/image.hpp"
#include "fovea/fovea.hpp"
#include "fovea/io/atomic_file.hpp"
#include "fovea/nn/summary.hpp"
#include "model.hpp"

namespace {

namespace fs = std::filesystem;
using fovea::Device;
using fovea::Shape;
using fovea::Tensor;

constexpr int kExitOk = 0;
constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr std::int64_t kBatch = 16;  // images per forward pass in `predict`

// A command line that parses but makes no sense (exit code 2).
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Per-channel statistics of the DR fundus photos the study trains on ("--normalization dr").
constexpr std::array<float, 3> kDrMean{0.3203f, 0.2244f, 0.1609f};
constexpr std::array<float, 3> kDrStd{0.2622f, 0.1833f, 0.1318f};

std::string version_string() {
  return "fovea " + std::to_string(FOVEA_VERSION_MAJOR) + "." + std::to_string(FOVEA_VERSION_MINOR) + "." +
         std::to_string(FOVEA_VERSION_PATCH);
}

// The model flags shared by every subcommand.
struct ModelFlags {
  std::string arch;
  int num_classes = 1000;
  float width = 1.0f;
  bool small_stem = false;

  fovea::models::ResNetConfig config() const {
    fovea::models::ResNetConfig cfg;
    cfg.num_classes = num_classes;
    cfg.width = width;
    cfg.small_stem = small_stem;
    return cfg;
  }
  std::string describe() const {
    std::ostringstream os;
    os << arch << ", " << num_classes << " classes, width " << width << ", "
       << (small_stem ? "small" : "standard") << " stem";
    return os.str();
  }
};

void add_model_flags(CLI::App* cmd, ModelFlags& flags, bool num_classes_required) {
  cmd->add_option("--arch", flags.arch, "architecture")
      ->required()
      ->check(CLI::IsMember(fovea::tools::architectures()));
  auto* k =
      cmd->add_option("--num-classes", flags.num_classes, "classifier outputs")->check(CLI::PositiveNumber);
  if (num_classes_required) k->required();
  else k->capture_default_str();
  cmd->add_option("--width", flags.width, "channel width multiplier")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--small-stem", flags.small_stem, "3x3 stride-1 stem without max-pool (32-128 px inputs)");
}

// "0.485,0.456,0.406" -> three floats.
std::array<float, 3> parse_triple(const std::string& text, const char* flag) {
  std::array<float, 3> v{};
  std::size_t pos = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const std::size_t end = i < 2 ? text.find(',', pos) : text.size();
    if (end == std::string::npos) break;
    const std::string part = text.substr(pos, end - pos);
    const char* first = part.data();
    const char* last = part.data() + part.size();
    const auto [ptr, ec] = std::from_chars(first, last, v[i]);
    if (part.empty() || ec != std::errc() || ptr != last)
      throw UsageError(std::string(flag) + ": '" + text + "' is not three comma-separated numbers");
    pos = end + 1;
    if (i == 2) return v;
  }
  throw UsageError(std::string(flag) + ": '" + text + "' is not three comma-separated numbers");
}

// The shortest decimal that reads back as the same float, as a JSON number.
nlohmann::ordered_json json_float(float x) {
  char buf[32];
  const auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, x);
  if (ec != std::errc() || !std::isfinite(x)) return nlohmann::ordered_json(static_cast<double>(x));
  return nlohmann::ordered_json(std::strtod(std::string(buf, ptr).c_str(), nullptr));
}

void check_output_directory(const fs::path& out) {
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  if (!fs::is_directory(dir))
    throw fovea::Error("cannot write '" + out.string() + "': directory '" + dir.string() +
                       "' does not exist");
  if (fs::is_directory(out)) throw fovea::Error("cannot write '" + out.string() + "': it is a directory");
}

// ---- fovea summary ----------------------------------------------------------------------------

struct SummaryArgs {
  ModelFlags model;
  int size = 224;
};

int run_summary(const SummaryArgs& a) {
  std::cout << fovea::backend_summary() << '\n';
  auto net = fovea::tools::make_model(a.model.arch, a.model.config());
  const Shape input{1, 3, a.size, a.size};
  net->setup(input, Device::cpu());
  std::cout << "model: " << a.model.describe() << '\n';
  net->print_summary(input, std::cout);
  std::cout << "parameters: " << fovea::nn::with_thousands(net->parameter_count()) << '\n';
  return kExitOk;
}

// ---- fovea init -------------------------------------------------------------------------------

struct InitArgs {
  ModelFlags model;
  std::uint64_t seed = 0;
  std::string out;
};

int run_init(const InitArgs& a) {
  check_output_directory(a.out);
  auto net = fovea::tools::make_model(a.model.arch, a.model.config());
  net->setup(Shape{1, 3, 224, 224}, Device::cpu());
  net->initialize(a.seed);
  std::ostringstream width;
  width << a.model.width;
  net->save_weights(a.out, {{"format", "pt"},
                            {"producer", version_string() + " init"},
                            {"arch", a.model.arch},
                            {"num_classes", std::to_string(a.model.num_classes)},
                            {"width", width.str()},
                            {"small_stem", a.model.small_stem ? "true" : "false"},
                            {"seed", std::to_string(a.seed)}});
  std::cout << "wrote " << a.out << ": " << a.model.describe() << ", seed " << a.seed << ", "
            << fovea::nn::with_thousands(net->parameter_count()) << " parameters\n";
  return kExitOk;
}

// ---- fovea predict ----------------------------------------------------------------------------

struct PredictArgs {
  ModelFlags model;
  std::string weights;
  std::vector<std::string> images;
  int size = 224;
  std::string mean, stdev, normalization;
  std::string device = "cpu";
  bool partial = false;
  std::string out;
  std::string preprocess = "resize";  // resize (Resize + CenterCrop to --size) | fov | graham
};

// One image as `predict` feeds it: --preprocess resize: Resize(size) + CenterCrop(size) +
// Normalize (torchvision's evaluation transform); fov and graham: as the drivers read it (their
// loader's decoding at size / 0.875 with the field-of-view crop, then their test transform's centre
// crop and normalisation), so that a model fine-tuned with --preprocess sees what evaluate gave it.
//   -> (1, 3, size, size) on the cpu.
Tensor predict_input(const std::string& path, const PredictArgs& a, std::array<float, 3> mean,
                     std::array<float, 3> stdev) {
  const fovea::data::FundusMode mode = fovea::data::parse_fundus_mode(a.preprocess);
  if (mode == fovea::data::FundusMode::resize) return fovea::data::preprocess_for_model(path, a.size, mean, stdev);
  const int side = static_cast<int>(std::lround(a.size / 0.875));
  Tensor decoded = fovea::data::preprocess_fundus(path, fovea::data::fundus_settings(mode, side));
  decoded.reshape(Shape{1, 3, side, side});
  fovea::ChannelStats stats;
  for (int c = 0; c < 3; ++c) stats.mean[c] = mean[static_cast<std::size_t>(c)], stats.std[c] = stdev[static_cast<std::size_t>(c)];
  Tensor x(Shape{1, 3, a.size, a.size});
  const std::int64_t ids[1] = {0};
  fovea::data::augment_batch(decoded, ids, 0, 0, fovea::data::test_transform(a.size, stats), 0, x.view());
  return x;
}

int run_predict(const PredictArgs& a) {
  std::array<float, 3> mean = fovea::data::kImageNetMean, stdev = fovea::data::kImageNetStd;
  if (a.normalization == "dr") {
    mean = kDrMean;
    stdev = kDrStd;
  }
  if (!a.mean.empty()) mean = parse_triple(a.mean, "--mean");
  if (!a.stdev.empty()) stdev = parse_triple(a.stdev, "--std");
  for (float s : stdev)
    if (!(s > 0.0f && std::isfinite(s)))
      throw UsageError("--std: every value must be positive, got '" + a.stdev + "'");
  Device device;
  try {
    device = Device::parse(a.device);
  } catch (const fovea::Error&) {
    throw UsageError("--device: '" + a.device + "' is not cpu, cuda or cuda:N");
  }
  check_output_directory(a.out);

  std::cout << fovea::backend_summary() << '\n';
  fovea::require_device(device);
  auto net = fovea::tools::make_model(a.model.arch, a.model.config());
  const auto count = static_cast<std::int64_t>(a.images.size());
  net->setup(Shape{std::min(count, kBatch), 3, a.size, a.size}, device);
  fovea::nn::LoadOptions load;
  if (a.partial) {
    load.mode = fovea::nn::LoadMode::partial;
    net->initialize(0);  // what the file does not cover keeps seed-0 initial values
  }
  try {
    const fovea::nn::LoadReport report = net->load_weights(a.weights, load);
    if (a.partial) std::cerr << "fovea: partial load of " << a.weights << ": " << report.str() << '\n';
  } catch (const fovea::Error& e) {
    throw fovea::Error(std::string(e.what()) +
                       "\n(are these weights for another --arch, --num-classes, --width or --small-stem? "
                       "--partial loads the keys that match)");
  }
  net->set_training(false);
  if (const std::string note = fovea::tools::preprocess_mismatch("fovea predict", a.weights, a.preprocess);
      !note.empty())
    std::cerr << note << '\n';

  nlohmann::ordered_json images = nlohmann::ordered_json::array();
  for (std::int64_t begin = 0; begin < count; begin += kBatch) {
    const std::int64_t n = std::min(kBatch, count - begin);
    Tensor batch(Shape{n, 3, a.size, a.size});  // (n, 3, S, S) on the host
    const std::int64_t sample = 3LL * a.size * a.size;
    for (std::int64_t i = 0; i < n; ++i) {
      const Tensor x = predict_input(a.images[static_cast<std::size_t>(begin + i)], a, mean, stdev);
      std::copy_n(x.data(), sample, batch.data() + i * sample);
    }
    const Tensor input = batch.to(device);
    const fovea::CView logits = net->forward(input);  // (n, K)
    Tensor probabilities(logits.shape(), device);     // (n, K)
    fovea::softmax_forward(logits, probabilities);
    std::vector<float> host_logits(static_cast<std::size_t>(logits.numel()));
    fovea::copy(logits, fovea::View(host_logits.data(), logits.shape(), Device::cpu()));
    const std::vector<float> host_probs = probabilities.to_vector();
    const std::int64_t k = logits.shape()[1];
    for (std::int64_t i = 0; i < n; ++i) {
      nlohmann::ordered_json l = nlohmann::ordered_json::array(), p = nlohmann::ordered_json::array();
      std::int64_t best = 0;
      for (std::int64_t j = 0; j < k; ++j) {
        const auto at = static_cast<std::size_t>(i * k + j);
        l.push_back(json_float(host_logits[at]));
        p.push_back(json_float(host_probs[at]));
        if (host_logits[at] > host_logits[static_cast<std::size_t>(i * k + best)]) best = j;
      }
      const std::string& path = a.images[static_cast<std::size_t>(begin + i)];
      std::cout << path << ": class " << best
                << " (p = " << host_probs[static_cast<std::size_t>(i * k + best)] << ")\n";
      images.push_back({{"image", path}, {"logits", l}, {"probabilities", p}, {"prediction", best}});
    }
  }
  const nlohmann::ordered_json result{
      {"arch", a.model.arch},
      {"weights", a.weights},
      {"num_classes", a.model.num_classes},
      {"width", a.model.width},
      {"small_stem", a.model.small_stem},
      {"size", a.size},
      {"preprocess", a.preprocess},
      {"mean", {json_float(mean[0]), json_float(mean[1]), json_float(mean[2])}},
      {"std", {json_float(stdev[0]), json_float(stdev[1]), json_float(stdev[2])}},
      {"device", device.str()},
      {"backend", fovea::backend_summary()},
      {"images", images}};
  fovea::io::write_file_atomically(a.out, result.dump(2) + "\n");
  std::cout << "wrote " << a.out << ": " << count << " image" << (count == 1 ? "" : "s") << '\n';
  return kExitOk;
}

int usage_error(const std::string& message) {
  std::cerr << "fovea: error: " << message << "\nRun 'fovea --help' or 'fovea <command> --help' for usage.\n";
  return kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  fovea::cpu::restart_with_short_blas_spin(argv);  // cpu/gemm.hpp: same bits, less time
  fovea::reuse_freed_host_memory();                // freed activations stay in the heap (core/memory.hpp)
  CLI::App app{
      "fovea: ResNet classifiers for fundus images: model summaries, initial weights, predictions.\n"
      "Exit codes: 0 success, 1 runtime error, 2 usage error.",
      "fovea"};
  app.set_version_flag("--version", version_string());
  app.require_subcommand(1);

  SummaryArgs summary;
  CLI::App* summary_cmd =
      app.add_subcommand("summary", "print the layer table and parameter count of a model");
  add_model_flags(summary_cmd, summary.model, false);
  summary_cmd->add_option("--size", summary.size, "input height and width for the shapes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  InitArgs init;
  CLI::App* init_cmd =
      app.add_subcommand("init", "write randomly initialised weights (torchvision keys, safetensors)");
  add_model_flags(init_cmd, init.model, true);
  init_cmd->add_option("--seed", init.seed, "initialisation seed")->capture_default_str();
  init_cmd->add_option("--out", init.out, "output .safetensors file (written atomically)")->required();

  PredictArgs predict;
  CLI::App* predict_cmd = app.add_subcommand("predict", "classify image files with a safetensors checkpoint");
  add_model_flags(predict_cmd, predict.model, true);
  predict_cmd->add_option("--weights", predict.weights, "safetensors checkpoint (torchvision keys)")
      ->required();
  predict_cmd->add_option("--image", predict.images, "JPEG/PNG/BMP/GIF image (repeatable)")->required();
  predict_cmd->add_option("--size", predict.size, "model input size: resize shorter side, centre crop")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  predict_cmd
      ->add_option("--preprocess", predict.preprocess,
                   "resize (Resize + CenterCrop to --size), or fov / graham: the images as the drivers' "
                   "--preprocess makes them (field-of-view crop, Ben Graham's normalisation)")
      ->check(CLI::IsMember({"resize", "fov", "graham"}))
      ->capture_default_str();
  auto* mean_opt =
      predict_cmd->add_option("--mean", predict.mean, "per-channel mean m1,m2,m3 (default ImageNet)");
  auto* std_opt =
      predict_cmd->add_option("--std", predict.stdev, "per-channel std s1,s2,s3 (default ImageNet)");
  mean_opt->needs(std_opt);
  std_opt->needs(mean_opt);
  predict_cmd
      ->add_option("--normalization", predict.normalization,
                   "preset: imagenet (0.485,0.456,0.406 / 0.229,0.224,0.225) or dr (0.3203,0.2244,0.1609 / "
                   "0.2622,0.1833,0.1318)")
      ->check(CLI::IsMember({"imagenet", "dr"}))
      ->excludes(mean_opt)
      ->excludes(std_opt);
  predict_cmd->add_option("--device", predict.device, "cpu, cuda or cuda:N")->capture_default_str();
  predict_cmd->add_flag("--partial", predict.partial, "load the keys that match, report the rest");
  predict_cmd->add_option("--out", predict.out, "output JSON file (written atomically)")->required();

  // Subcommands kept in their own headers (tools/fovea/cmd_<name>.hpp) register here with
  // add_<name>_command(app) and run from a CLI11 callback inside app.parse().
  fovea::tools::add_generate_command(app);
  fovea::tools::add_driver_commands(app);
  fovea::tools::add_features_command(app);
  fovea::tools::add_compare_command(app);

  try {
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      return usage_error(e.what());
    }
    if (summary_cmd->parsed()) return run_summary(summary);
    if (init_cmd->parsed()) return run_init(init);
    if (predict_cmd->parsed()) return run_predict(predict);
    return app.get_subcommands().empty() ? usage_error("no command given") : kExitOk;
  } catch (const UsageError& e) {
    return usage_error(e.what());
  } catch (const fovea::Error& e) {
    std::cerr << "fovea: error: " << e.what() << '\n';
  } catch (const std::bad_alloc&) {
    std::cerr << "fovea: error: out of host memory\n";
  } catch (const std::exception& e) {
    std::cerr << "fovea: error: " << e.what() << '\n';
  }
  return kExitRuntime;
}
