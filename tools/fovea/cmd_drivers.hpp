// tools/fovea/cmd_drivers.hpp: the command-line side of the experiment drivers: `fovea pretrain`,
// `fovea finetune`, `fovea evaluate`, `fovea robustness` and `fovea study` (the README's main job:
// synthetic data -> SimCLR pretraining -> fine-tuning from it and from random initialisation ->
// evaluation and robustness side by side).
#pragma once

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>

#include "cmd_generate.hpp"
#include "config_file.hpp"
#include "drivers.hpp"
#include "fovea/core/device.hpp"
#include "fovea/core/error.hpp"
#include "fovea/models/resnet.hpp"

namespace fovea::tools {

inline int run_pretrain(const PretrainArgs& a) {
  if (a.arch == "resnet18") return drivers::pretrain<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::pretrain<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::pretrain<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}
inline int run_finetune(const FinetuneArgs& a) {
  if (a.arch == "resnet18") return drivers::finetune<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::finetune<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::finetune<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}
inline EvalSummary run_evaluate(const EvaluateArgs& a) {
  if (a.arch == "resnet18") return drivers::evaluate<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::evaluate<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::evaluate<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

inline RobustnessSummary run_robustness(const RobustnessArgs& a) {
  if (a.arch == "resnet18") return drivers::robustness<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::robustness<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::robustness<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

inline SaliencySummary run_saliency(const SaliencyArgs& a) {
  if (a.arch == "resnet18") return drivers::saliency<models::ResNet18Backbone>(a);
  if (a.arch == "resnet34") return drivers::saliency<models::ResNet34Backbone>(a);
  if (a.arch == "resnet50") return drivers::saliency<models::ResNet50Backbone>(a);
  FOVEA_FAIL("unknown architecture '", a.arch, "' (expected resnet18, resnet34 or resnet50)");
}

namespace detail {
inline void add_run_flags(CLI::App* c, RunArgs& a) {
  c->add_option("--data", a.data, "data folder (labels.csv + images, APTOS, class folders)");
  c->add_option("--labels", a.labels, "label CSV (default: <data>/labels.csv)");
  c->add_option("--arch", a.arch, "resnet18, resnet34 or resnet50")->capture_default_str();
  c->add_option("--out", a.out, "output folder (required)");
  add_config_flag(c, a.config);
  c->add_option("--device", a.device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  c->add_option("--normalization", a.normalization, "dr or imagenet statistics")->capture_default_str();
  c->add_option("--size", a.size, "input side in pixels")->capture_default_str()->check(CLI::Range(16, 4096));
  c->add_option("--width", a.width, "ResNet width multiplier")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_flag("--small-stem", a.small_stem, "3x3 stride-1 stem without max-pool (32-128 px inputs)");
  c->add_option("--epochs", a.epochs, "epochs")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--batch-size", a.batch_size, "batch size")->capture_default_str()->check(CLI::Range(1, 65536));
  c->add_option("--lr", a.lr, "base learning rate (0: the method's default)")->capture_default_str();
  c->add_option("--weight-decay", a.weight_decay, "weight decay (< 0: the method's default)")->capture_default_str();
  c->add_option("--warmup-epochs", a.warmup_epochs, "warm-up epochs (< 0: the method's default)")->capture_default_str();
  c->add_option("--seed", a.seed, "seed of every random draw")->capture_default_str();
  c->add_option("--threads", a.threads, "loader threads")->capture_default_str()->check(CLI::Range(0, 256));
  c->add_option("--log-every", a.log_every, "steps between metrics rows")->capture_default_str()->check(CLI::Range(1, 1000000));
  c->add_option("--checkpoint-every", a.checkpoint_every,
                 "steps between mid-epoch checkpoints (0: only at epoch ends)")->capture_default_str()->check(CLI::Range(0, 100000000));
  c->add_flag("!--no-resume", a.resume, "start over even when <out>/checkpoints/latest exists");
}
}  // namespace detail

// Whether an option was set (on the command line or by --config) to something other than its
// default (a run's config.json lists every setting, the unused ones at their defaults).
inline bool set_away_from_default(const CLI::Option* o) {
  if (o == nullptr || o->count() == 0) return false;
  const std::string value = o->as<std::string>(), fallback = o->get_default_str();
  if (value == fallback) return false;
  try {
    const double a = std::stod(value), b = std::stod(fallback);
    return std::abs(a - b) > 1e-6 * std::max(1.0, std::abs(b));
  } catch (const std::exception&) {
    return true;
  }
}

// Flags that do not apply together are errors, not silently ignored: each of `flags` set away
// from its default contradicts the setting described by `because`.
inline void reject_flags(CLI::App& cmd, std::initializer_list<const char*> flags, const std::string& because) {
  for (const char* flag : flags)
    FOVEA_CHECK(!set_away_from_default(cmd.get_option_no_throw(flag)), "fovea ", cmd.get_name(), ": ", flag,
                " does not apply ", because);
}

inline void add_driver_commands(CLI::App& app) {
  auto pa = std::make_shared<PretrainArgs>();
  auto* p = app.add_subcommand("pretrain", "contrastive pretraining (SimCLR or MoCo v2); writes backbone.safetensors");
  detail::add_run_flags(p, *pa);
  p->add_option("--method", pa->method, "simclr or moco")->capture_default_str()->check(CLI::IsMember({"simclr", "moco"}));
  p->add_option("--init", pa->init, "start from these backbone weights (e.g. torchvision ImageNet)");
  p->add_option("--temperature", pa->temperature, "tau (0: 0.5 SimCLR, 0.2 MoCo)")->capture_default_str();
  p->add_option("--proj-hidden", pa->hidden, "projection hidden width (0: the backbone's)")->capture_default_str();
  p->add_option("--proj-dim", pa->dim, "projection output dimension")->capture_default_str();
  p->add_option("--queue", pa->queue, "MoCo queue length")->capture_default_str();
  p->add_option("--key-momentum", pa->key_momentum, "MoCo key-encoder momentum")->capture_default_str();
  p->add_option("--knn-every", pa->knn_every,
                "epochs between kNN accuracies of the backbone on the graded images (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  p->callback([pa, p] {
    if (!pa->config.empty()) apply_config_file(*p, pa->config);
    if (pa->method == "simclr") reject_flags(*p, {"--queue", "--key-momentum"}, "to SimCLR (MoCo settings)");
    run_pretrain(*pa);
  });

  auto fa = std::make_shared<FinetuneArgs>();
  auto* f = app.add_subcommand("finetune", "supervised training or linear evaluation; best checkpoint on validation");
  detail::add_run_flags(f, *fa);
  f->add_option("--init", fa->init, "random or a weights file (torchvision, fovea backbone or checkpoint)")->capture_default_str();
  f->add_flag("--linear", fa->linear, "linear evaluation: frozen backbone (batch norm in eval mode)");
  f->add_option("--label-fraction", fa->label_fraction, "fraction of training labels (stratified, by patient)")
      ->capture_default_str()->check(CLI::Range(1e-6, 1.0));
  f->add_option("--label-scheme", fa->label_scheme, "grades, referable[:t] or any")->capture_default_str();
  f->add_option("--val-fraction", fa->val_fraction, "validation share of patients")->capture_default_str();
  f->add_option("--test-fraction", fa->test_fraction, "test share of patients")->capture_default_str();
  f->add_option("--sampler", fa->sampler, "shuffled, or balanced: every class equally often (draws with replacement)")
      ->capture_default_str()->check(CLI::IsMember({"shuffled", "balanced"}));
  f->add_option("--class-weights", fa->class_weights,
                "cross-entropy class weights: none, inverse (n / (K n_k) on the training split) or w0,w1,...")
      ->capture_default_str();
  f->add_option("--label-smoothing", fa->label_smoothing, "label smoothing of the cross-entropy")
      ->capture_default_str()->check(CLI::Range(0.0, 0.999));
  f->callback([fa, f] {
    if (!fa->config.empty()) apply_config_file(*f, fa->config);
    run_finetune(*fa);
  });

  auto ea = std::make_shared<EvaluateArgs>();
  auto* e = app.add_subcommand("evaluate", "metrics with bootstrap 95% CIs on a labelled set: results.json, predictions.csv");
  detail::add_run_flags(e, *ea);
  e->add_option("--weights", ea->weights, "classifier weights (safetensors; required)");
  e->add_option("--label-scheme", ea->label_scheme, "grades, referable[:t] or any")->capture_default_str();
  e->add_option("--referable-threshold", ea->referable_threshold, "referable DR: grade >= t")->capture_default_str()->check(CLI::Range(1, 4));
  e->add_option("--bootstrap", ea->bootstrap, "bootstrap resamples")->capture_default_str()->check(CLI::Range(1, 100000));
  e->add_option("--split", ea->split, "split file (image,split) to pick a part of the data");
  e->add_option("--split-name", ea->split_name, "train, validation or test")->capture_default_str();
  e->callback([ea, e] {
    if (!ea->config.empty()) apply_config_file(*e, ea->config);
    if (ea->split.empty()) reject_flags(*e, {"--split-name"}, "without --split");
    run_evaluate(*ea);
  });

  auto ra = std::make_shared<RobustnessArgs>();
  auto* r = app.add_subcommand("robustness",
                               "a classifier under ImageNet-C and fundus corruptions at 5 severities: "
                               "robustness.csv, robustness.json (mCE against --reference)");
  detail::add_run_flags(r, *ra);
  r->add_option("--weights", ra->weights, "classifier weights (safetensors; required)");
  r->add_option("--label-scheme", ra->label_scheme, "grades, referable[:t] or any")->capture_default_str();
  r->add_option("--referable-threshold", ra->referable_threshold, "referable DR: grade >= t")
      ->capture_default_str()
      ->check(CLI::Range(1, 4));
  r->add_option("--split", ra->split, "split file (image,split) to pick a part of the data");
  r->add_option("--split-name", ra->split_name, "train, validation or test")->capture_default_str();
  r->add_option("--corruptions", ra->corruptions, "all, imagenet_c, fundus or comma-separated names")
      ->capture_default_str();
  r->add_option("--severities", ra->severities, "comma-separated severities in 1..5")->capture_default_str();
  r->add_option("--reference", ra->reference,
                "a reference run's robustness.csv (corruption errors relative to it)");
  r->callback([ra, r] {
    if (!ra->config.empty()) apply_config_file(*r, ra->config);
    if (ra->split.empty()) reject_flags(*r, {"--split-name"}, "without --split");
    try {  // a name or severity that does not exist is a usage error (exit code 2)
      corruption_list(ra->corruptions);
      severity_list(ra->severities);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    run_robustness(*ra);
  });

  auto la = std::make_shared<SaliencyArgs>();
  auto* l = app.add_subcommand("saliency",
                               "attribution maps of a classifier scored against lesion masks: "
                               "saliency.csv, saliency_by_size.csv, saliency.json, maps/");
  detail::add_run_flags(l, *la);
  l->add_option("--weights", la->weights, "classifier weights (safetensors; required)");
  l->add_option("--masks", la->masks, "lesion-mask CSV: image,lesion_type,mask_path (required)");
  l->add_option("--label-scheme", la->label_scheme, "the classifier's classes: grades, referable[:t] or any")
      ->capture_default_str();
  l->add_option("--method", la->methods,
                "gradient, gradient_x_input, smoothgrad, integrated_gradients, grad_cam, lrp (comma list)")
      ->capture_default_str();
  l->add_option("--target", la->target, "predicted or a class index")->capture_default_str();
  l->add_option("--baseline", la->baseline, "integrated gradients' baseline")
      ->capture_default_str()
      ->check(CLI::IsMember({"black", "gray", "mean", "blurred"}));
  l->add_option("--ig-rule", la->ig_rule, "integrated gradients' quadrature")
      ->capture_default_str()
      ->check(CLI::IsMember({"riemann_midpoint", "gauss_legendre"}));
  l->add_option("--ig-steps", la->ig_steps, "integrated gradients' steps")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  l->add_option("--smoothgrad-samples", la->smoothgrad_samples, "SmoothGrad's noisy copies")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  l->add_option("--smoothgrad-sigma", la->smoothgrad_sigma,
                "SmoothGrad's noise std / (max - min) of the image")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--gradcam-layer", la->gradcam_layer,
                "Grad-CAM's layer (state-dict path: layer4, layer3.1, ...)")
      ->capture_default_str();
  l->add_option("--lrp-rule", la->lrp_rule, "LRP's rule for the inner convolutions")
      ->capture_default_str()
      ->check(CLI::IsMember({"plus", "gamma", "epsilon"}));
  l->add_option("--lrp-input", la->lrp_input, "LRP's rule for the first convolution")
      ->capture_default_str()
      ->check(CLI::IsMember({"box", "flat", "epsilon"}));
  l->add_option("--lrp-gamma", la->lrp_gamma, "LRP-gamma's gamma (--lrp-rule gamma)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--count", la->count, "images scored (0: every image with a mask)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_option("--split", la->split, "split file (image,split): score only one part's images");
  l->add_option("--split-name", la->split_name, "train, validation or test")->capture_default_str();
  l->add_option("--randomization", la->randomization,
                "images of the cascading parameter-randomisation check (0: off): randomization.csv")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  l->add_flag("!--no-overlays", la->overlays, "skip the PNG overlays and raw maps");
  l->callback([la, l] {
    if (!la->config.empty()) apply_config_file(*l, la->config);
    if (la->split.empty()) reject_flags(*l, {"--split-name"}, "without --split");
    try {
      saliency_methods(la->methods);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    run_saliency(*la);
  });

  // The main job: small enough for a CPU in minutes by default; --full for the GPU-sized study.
  struct StudyArgs {
    std::string data, out = "runs/study", arch = "resnet18", device = "auto";
    std::int64_t count = 240, pretrain_epochs = 6, finetune_epochs = 12, batch_size = 32;
    int size = 64, generate_size = 96, threads = 2;
    float width = 0.25f;
    std::uint64_t seed = 0;
    bool full = false;
    std::string config;
    std::string sampler = "shuffled", class_weights = "none";
    std::string corruptions = "all", severities = "1,2,3,4,5";  // robustness stage ("none": skipped)
    std::string saliency = "gradient,integrated_gradients,grad_cam,lrp";  // saliency stage ("none": skipped)
    std::int64_t saliency_count = 40, saliency_randomization = 4;
  };
  auto sa = std::make_shared<StudyArgs>();
  auto* s = app.add_subcommand("study", "the main job: SimCLR pretraining, fine-tuning from it and from random "
                                        "initialisation, evaluation side by side");
  s->add_option("--data", sa->data, "labelled data folder (default: generate fovea's synthetic fundus set)");
  s->add_option("--out", sa->out, "output folder")->capture_default_str();
  s->add_option("--arch", sa->arch, "resnet18, resnet34 or resnet50")->capture_default_str();
  s->add_option("--device", sa->device, "auto, cpu, cuda or cuda:N")->capture_default_str();
  s->add_option("--count", sa->count, "synthetic images to generate")->capture_default_str();
  s->add_option("--size", sa->size, "input side")->capture_default_str();
  s->add_option("--width", sa->width, "ResNet width multiplier")->capture_default_str();
  s->add_option("--pretrain-epochs", sa->pretrain_epochs, "SimCLR epochs")->capture_default_str();
  s->add_option("--finetune-epochs", sa->finetune_epochs, "fine-tuning epochs")->capture_default_str();
  s->add_option("--batch-size", sa->batch_size, "batch size")->capture_default_str();
  s->add_option("--threads", sa->threads, "loader threads")->capture_default_str();
  s->add_option("--seed", sa->seed, "seed")->capture_default_str();
  s->add_option("--sampler", sa->sampler, "fine-tuning sampler: shuffled or balanced")
      ->capture_default_str()->check(CLI::IsMember({"shuffled", "balanced"}));
  s->add_option("--class-weights", sa->class_weights, "fine-tuning class weights: none, inverse or w0,w1,...")
      ->capture_default_str();
  s->add_option("--corruptions", sa->corruptions,
                "robustness stage: all, imagenet_c, fundus, comma-separated names, or none to skip it")
      ->capture_default_str();
  s->add_option("--severities", sa->severities, "robustness stage: severities in 1..5")
      ->capture_default_str();
  s->add_option(
       "--saliency", sa->saliency,
       "saliency stage: attribution methods (comma list, see fovea saliency --method), or none to skip it")
      ->capture_default_str();
  s->add_option("--saliency-count", sa->saliency_count,
                "saliency stage: test images with lesion masks scored (0: all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  s->add_option("--saliency-randomization", sa->saliency_randomization,
                "saliency stage: images of the cascading parameter-randomisation check (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  s->add_flag("--full", sa->full, "GPU-sized defaults: ResNet-50 at 224 px, width 1, 2000 images, 100/50 epochs, "
                                   "batch 256 (flags given explicitly override them)");
  add_config_flag(s, sa->config);
  s->callback([sa, s] {
    if (!sa->config.empty()) apply_config_file(*s, sa->config);
    if (!sa->data.empty()) reject_flags(*s, {"--count"}, "with --data (it sizes the generated synthetic set)");
    StudyArgs a = *sa;
    try {  // checked before hours of training, not after
      if (a.corruptions != "none") {
        corruption_list(a.corruptions);
        severity_list(a.severities);
      }
      if (a.saliency != "none") saliency_methods(a.saliency);
    } catch (const fovea::Error& e) {
      throw CLI::ValidationError(e.what());
    }
    if (a.full) {  // the GPU-sized defaults; flags given explicitly keep their values
      auto unset = [&](const char* flag) { return s->get_option(flag)->count() == 0; };
      if (unset("--arch")) a.arch = "resnet50";
      if (unset("--size")) a.size = 224;
      if (unset("--width")) a.width = 1.0f;
      if (unset("--count")) a.count = 2000;
      if (unset("--pretrain-epochs")) a.pretrain_epochs = 100;
      if (unset("--finetune-epochs")) a.finetune_epochs = 50;
      if (unset("--batch-size")) a.batch_size = 256;
    }
    // Synthetic images at least as large as the decode side (size / 0.875), so nothing is upscaled.
    a.generate_size = std::max(96, static_cast<int>(std::lround(a.size / 0.875)));
    const bool small = a.size <= 128;
    namespace fs = std::filesystem;
    std::string data = a.data;
    if (data.empty()) {
      data = (fs::path(a.out) / "data").string();
      if (!fs::exists(fs::path(data) / "labels.csv")) {
        GenerateOptions g;
        g.out = data, g.count = a.count, g.size = a.generate_size, g.seed = a.seed, g.balanced = true, g.threads = a.threads;
        g.masks = true;  // lesions.csv + masks/: the saliency stage's ground truth
        write_synthetic_dataset(g, &std::cerr);
      }
      std::cout << "study: synthetic fundus data in " << data << "\n";
    }
    auto base = [&](RunArgs& r, const std::string& sub) {
      r.data = data, r.arch = a.arch, r.out = (fs::path(a.out) / sub).string(), r.device = a.device;
      r.size = a.size, r.width = a.width, r.small_stem = small, r.batch_size = a.batch_size, r.seed = a.seed;
      r.threads = a.threads;
    };
    PretrainArgs pre;
    base(pre, "pretrain_simclr");
    pre.epochs = a.pretrain_epochs;
    run_pretrain(pre);
    EvalSummary results[2];
    RobustnessSummary robust[2];
    const bool robustness = a.corruptions != "none";
    const char* names[2] = {"SimCLR init", "random init"};
    std::string split_file[2], weights[2];
    for (int i = 0; i < 2; ++i) {
      FinetuneArgs ft;
      base(ft, i == 0 ? "finetune_simclr" : "finetune_random");
      ft.epochs = a.finetune_epochs;
      ft.sampler = a.sampler, ft.class_weights = a.class_weights;
      ft.init = i == 0 ? (fs::path(pre.out) / "backbone.safetensors").string() : "random";
      run_finetune(ft);
      EvaluateArgs ev;
      base(ev, i == 0 ? "evaluate_simclr" : "evaluate_random");
      ev.weights = weights[i] = (fs::path(ft.out) / "best.safetensors").string();
      ev.split = split_file[i] = (fs::path(ft.out) / "split.csv").string();
      results[i] = run_evaluate(ev);
    }
    // Robustness on the same test split, random init first: it is the reference of SimCLR's mCE.
    for (int i = robustness ? 1 : -1; i >= 0; --i) {
      RobustnessArgs ra;
      base(ra, i == 0 ? "robustness_simclr" : "robustness_random");
      ra.weights = weights[i], ra.split = split_file[i];
      ra.corruptions = a.corruptions, ra.severities = a.severities;
      if (i == 0) ra.reference = (fs::path(a.out) / "robustness_random" / "robustness.csv").string();
      robust[i] = run_robustness(ra);
    }
    // Interpretability on the test images with lesion masks: each regime's maps scored against them.
    std::string masks;
    for (const char* name : {"lesions.csv", "lesion_masks.csv"})
      if (masks.empty() && fs::exists(fs::path(data) / name)) masks = (fs::path(data) / name).string();
    const bool saliency = a.saliency != "none" && !masks.empty();
    if (a.saliency != "none" && masks.empty())
      std::cout << "study: no lesions.csv or lesion_masks.csv in " << data << ": saliency stage skipped\n";
    SaliencySummary explained[2];
    for (int i = 0; saliency && i < 2; ++i) {
      SaliencyArgs sa2;
      base(sa2, i == 0 ? "saliency_simclr" : "saliency_random");
      sa2.weights = weights[i], sa2.split = split_file[i], sa2.masks = masks;
      sa2.methods = a.saliency, sa2.count = a.saliency_count, sa2.randomization = a.saliency_randomization;
      explained[i] = run_saliency(sa2);
    }
    std::printf("\nstudy: test split (%lld images), 95%% bootstrap CIs\n", static_cast<long long>(results[0].images));
    std::printf("%-14s %-24s %-24s %-24s\n", "regime", "quadratic kappa", "referable AUC", "accuracy");
    for (int i = 0; i < 2; ++i) {
      auto cell = [&](const char* k) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.3f [%.3f, %.3f]", results[i].point[k], results[i].low[k], results[i].high[k]);
        return std::string(buf);
      };
      std::printf("%-14s %-24s %-24s %-24s\n", names[i], cell("kappa").c_str(), cell("auc").c_str(),
                  cell("accuracy").c_str());
    }
    if (robustness) {
      std::printf("\nstudy: robustness on the test split (corruptions %s, severities %s)\n",
                  a.corruptions.c_str(), a.severities.c_str());
      std::printf("%-14s %-12s %-16s %-16s %-16s\n", "regime", "clean error", "corrupted error",
                  "corrupted kappa", "mCE vs random");
      for (int i = 0; i < 2; ++i)
        std::printf("%-14s %-12.3f %-16.3f %-16.3f %-16.3f\n", names[i], robust[i].clean_error,
                    robust[i].mean_error, robust[i].mean_kappa, i == 0 ? robust[i].mce : 1.0);
    }
    if (saliency) {
      std::printf("\nstudy: saliency against the MA+HE+EX lesion masks (%lld test images, means)\n",
                  static_cast<long long>(explained[0].images));
      std::printf("%-14s %-22s %-12s %-14s %-14s %-s\n", "regime", "method", "mass inside", "rank accuracy",
                  "pointing game", "randomised net (Spearman)");
      std::printf("%-14s %-22s %-12.3f %-14.3f\n", "", "chance level", explained[0].union_chance,
                  explained[0].union_chance);
      for (int i = 0; i < 2; ++i)
        for (const auto& [method, sc] : explained[i].union_scores)
          std::printf("%-14s %-22s %-12.3f %-14.3f %-14.3f %.3f\n", names[i], method.c_str(), sc.mass_inside,
                      sc.rank_accuracy, sc.pointing_game, sc.randomized_spearman);
    }
    std::printf("outputs: %s\n", a.out.c_str());
  });
}

}  // namespace fovea::tools
