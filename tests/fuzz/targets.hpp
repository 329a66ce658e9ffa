// tests/fuzz/targets.hpp: fovea's parsers of untrusted bytes as fuzz targets. Each target feeds one
// input to a parser and lets fovea::Error through: that is the documented way to reject bad input.
// Anything else (another exception, a crash, a sanitizer report, a hang, memory past the fuzzer's
// limit) is a bug. Used by the libFuzzer programs (fuzz_main.cpp, scripts/fuzz) and by the replay
// test (replay.cpp), which runs every committed seed and regression input in every build.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "fovea/config_file.hpp"
#include "fovea/core/error.hpp"
#include "fovea/data/csv.hpp"
#include "fovea/eval/predictions.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/fundus.hpp"
#include "fovea/data/image.hpp"
#include "fovea/data/split.hpp"
#include "fovea/data/tiff.hpp"
#include "fovea/io/safetensors.hpp"
#include "fovea/train/checkpoint.hpp"

namespace fovea::fuzz {

using Bytes = std::span<const std::uint8_t>;

inline std::string_view text_of(Bytes in) { return {reinterpret_cast<const char*>(in.data()), in.size()}; }

// Every image decoder: stb_image's formats, and TIFF (recognised by its magic) through libtiff.
inline void image(Bytes in) {
  const Tensor t = data::decode_image(in, "fuzz-input");
  FOVEA_CHECK(t.shape().rank() == 3 && t.shape()[0] == 3, "decode_image returned ", t.shape().str());
}

// A decoded image of any size and content through fundus preprocessing: field of view, crop,
// resize, Ben Graham, at a small output size, and the Otsu field-of-view mask. The output must be
// (3, S, S) and finite.
inline void fundus(Bytes in) {
  const Tensor image = data::decode_image(in, "fuzz-input");
  for (const bool crop : {true, false}) {
    data::FundusPreprocess settings;
    settings.size = 24;
    settings.crop_to_fov = crop;
    settings.ben_graham = crop;
    const Tensor out = data::preprocess_fundus(image.clone(), settings);
    FOVEA_CHECK(out.shape() == (Shape{3, 24, 24}), "preprocess_fundus returned ", out.shape().str());
    for (std::int64_t i = 0; i < out.numel(); ++i)
      FOVEA_CHECK(std::isfinite(out.data()[i]), "preprocess_fundus output ", i, " is ", out.data()[i]);
  }
  const Tensor mask = data::fov_mask(image);
  FOVEA_CHECK(mask.shape()[1] == image.shape()[1] && mask.shape()[2] == image.shape()[2], "fov_mask returned ",
              mask.shape().str(), " for ", image.shape().str());
}

// libtiff through fovea's memory stream, whatever the first bytes.
inline void tiff(Bytes in) { (void)data::decode_tiff(in, "fuzz-input"); }

// safetensors: weights and checkpoints. Strict; when that rejects the file, lax (unsupported dtypes
// and high ranks skipped), whose rejection is the target's. What parses becomes tensors, and the
// checkpoint metadata is read as a resume would read it.
inline void safetensors(Bytes in) {
  const auto bytes = std::as_bytes(in);
  io::SafeTensors file;
  try {
    file = io::parse_safetensors(bytes, "fuzz-input");
  } catch (const Error&) {
    io::SafeTensorsReadOptions lax;
    lax.skip_unsupported_dtypes = lax.skip_high_rank = true;
    file = io::parse_safetensors(bytes, "fuzz-input", lax);
  }
  for (const auto& [name, stored] : file.tensors) {
    FOVEA_CHECK(static_cast<std::int64_t>(stored.data.size()) == stored.shape.numel(), "tensor ", name,
                " holds ", stored.data.size(), " values for shape ", stored.shape.str());
    (void)io::to_tensor(stored);
  }
  train::Checkpoint c;
  c.metadata = file.metadata;
  c.tensors = std::move(file.tensors);
  try {
    train::read_checkpoint_position(c);
  } catch (const Error&) {
  }
}

// CSV: the strict parser, then every label-file reader (images looked up in a folder that does not
// exist, skipped as missing) and the split reader on the same table.
inline void csv(Bytes in) {
  const data::CsvTable t = data::parse_csv(text_of(in), "fuzz-input.csv");
  data::DatasetOptions options;
  options.skip_missing = true;
  options.image_dir = "/nonexistent/fovea-fuzz";
  using Loader = data::Dataset (*)(const data::CsvTable&, const data::DatasetOptions&);
  for (const Loader load :
       {Loader{data::load_eyepacs}, Loader{data::load_aptos}, Loader{data::load_idrid_grading},
        Loader{data::load_messidor2}, Loader{data::load_messidor1}, Loader{data::load_lesion_images}}) {
    try {
      const data::Dataset d = load(t, options);
      for (const data::Sample& s : d.samples)
        FOVEA_CHECK(s.label == data::kUnlabelled || (s.label >= 0 && s.label < d.num_classes), "label ",
                    s.label, " outside 0..", d.num_classes - 1);
    } catch (const Error&) {
    }
  }
  (void)data::detect_csv_kind(t);
  try {
    (void)data::split_from_table(t);
  } catch (const Error&) {
  }
  // an evaluation's predictions.csv (fovea compare); typed fields
  try {
    const eval::PredictionsFile p = eval::predictions_from_table(t);
    FOVEA_CHECK(p.probs.size() == p.ids.size() * static_cast<std::size_t>(p.classes), "predictions: ",
                p.probs.size(), " probabilities for ", p.ids.size(), " images of ", p.classes, " classes");
    (void)eval::align_predictions(p, p);
  } catch (const Error&) {
  }
  for (std::size_t r = 0; r < t.size() && r < 64; ++r)
    for (int c = 0; c < static_cast<int>(t.header.size()); ++c) {
      try {
        (void)t.real(r, c);
      } catch (const Error&) {
      }
      try {
        (void)t.integer(r, c, -1000, 1000);
      } catch (const Error&) {
      }
    }
  try {
    t.require_header("image,label,pred,p0,p1");
  } catch (const Error&) {
  }
  // format_csv writes what parse_csv reads back exactly.
  const data::CsvTable back = data::parse_csv(data::format_csv(t.header, t.rows), "fuzz-roundtrip.csv");
  FOVEA_CHECK(back.header == t.header && back.rows == t.rows,
              "format_csv of a parsed table does not parse back");
}

// The drivers' --config files: JSON, and (where yaml-cpp is built in) YAML, whose rejection is the
// target's.
inline void config(Bytes in) {
  const std::string text(text_of(in));
#if FOVEA_WITH_YAML
  try {
    (void)tools::detail::parse_json_config(text, "fuzz-input.json");
  } catch (const Error&) {
  }
  (void)tools::detail::parse_yaml_config(text, "fuzz-input.yaml");
#else
  (void)tools::detail::parse_json_config(text, "fuzz-input.json");
#endif
}

struct Target {
  const char* name;
  void (*run)(Bytes);
};

inline constexpr Target kTargets[] = {
    {"image", image}, {"fundus", fundus}, {"tiff", tiff}, {"safetensors", safetensors}, {"csv", csv}, {"config", config}};

// Runs `target` on `in`; fovea::Error is a rejection (returns false), success returns true, anything
// else propagates.
inline bool run(const Target& target, Bytes in) {
  try {
    target.run(in);
    return true;
  } catch (const Error&) {
    return false;
  }
}

}  // namespace fovea::fuzz
