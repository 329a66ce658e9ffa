// tests/test_train.cpp: the training engine on the CPU: a tiny ResNet learns a toy task, an
// interrupted-and-resumed run ends bitwise equal to an uninterrupted one, the NaN guard stops with
// the last good checkpoint intact, linear evaluation leaves the backbone untouched, SimCLR and MoCo
// steps run and move what they should, and two identical runs give identical losses.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "fovea/fovea.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/state.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/optim/optim.hpp"
#include "fovea/train/trainer.hpp"

namespace fovea {
namespace {

using namespace fovea::train;
using models::ResNet18;
using models::ResNetConfig;

std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("fovea_train_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}

// A toy task: class 1 images carry a bright 4x4 square in the left half, class 0 in the right half,
// on noise. `count` samples in batches of `batch`.
std::vector<Batch> toy_batches(int count, int batch, int size, std::uint64_t seed) {
  std::mt19937 gen(static_cast<unsigned>(seed));
  std::normal_distribution<float> noise(0.0f, 0.3f);
  std::uniform_int_distribution<int> pos(0, size / 2 - 4), row(0, size - 4);
  std::vector<Batch> out;
  for (int b = 0; b < count / batch; ++b) {
    std::vector<float> img(static_cast<std::size_t>(batch * 3 * size * size)), lab(static_cast<std::size_t>(batch));
    for (int i = 0; i < batch; ++i) {
      const int label = static_cast<int>(gen() % 2);
      lab[static_cast<std::size_t>(i)] = static_cast<float>(label);
      float* p = img.data() + static_cast<std::ptrdiff_t>(i) * 3 * size * size;
      for (int k = 0; k < 3 * size * size; ++k) p[k] = noise(gen);
      const int x0 = pos(gen) + (label == 1 ? 0 : size / 2), y0 = row(gen);
      for (int c = 0; c < 3; ++c)
        for (int y = y0; y < y0 + 4; ++y)
          for (int x = x0; x < x0 + 4; ++x) p[(c * size + y) * size + x] += 2.0f;
    }
    Batch bt;
    bt.images = Tensor::from(img, Shape{batch, 3, size, size});
    bt.labels = Tensor::from(lab, Shape{batch});
    out.push_back(std::move(bt));
  }
  return out;
}

ResNetConfig tiny() { return ResNetConfig{.num_classes = 2, .width = 0.125f, .small_stem = true}; }

std::vector<float> flat_weights(auto& net) {
  std::vector<float> all;
  net.visit_parameters("", [&](const std::string&, nn::Parameter& p) {
    const auto v = p.value.to_vector();
    all.insert(all.end(), v.begin(), v.end());
  });
  net.visit_buffers("", [&](const std::string&, Tensor& t) {
    const auto v = t.to_vector();
    all.insert(all.end(), v.begin(), v.end());
  });
  return all;
}

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A run stopped while a row was being appended (a full disk, a kill mid-write) leaves a record cut
// short at the end of metrics.jsonl / metrics.csv; a garbled line may sit in the middle. Resuming
// from a checkpoint drops them with the rows past its step, so the files then continue exactly as
// an uninterrupted run's.
TEST(MetricsLog, ResumeDropsRowsPastTheStepAndRecordsCutShort) {
  const auto row = [](std::int64_t step) {
    return MetricsRow{step, step / 2, "train", {{"loss", 1.0 / static_cast<double>(step)}, {"lr", 0.5}}};
  };
  const auto made_dir = [](const std::string& name) {
    const auto d = fresh_dir(name);
    std::filesystem::create_directories(d);
    return d;
  };
  const auto whole = made_dir("metrics_whole");
  {
    MetricsLog log(whole);
    for (std::int64_t s = 1; s <= 4; ++s) log.log(row(s));
  }
  const auto append = [](const std::filesystem::path& f, const std::string& text) {
    std::ofstream(f, std::ios::app | std::ios::binary) << text;
  };
  for (const std::string& tail_json :
       {std::string("{\"step\":"), std::string("{\"step\":1"), std::string("{\"st")}) {
    const auto cut = made_dir("metrics_cut");
    {
      MetricsLog log(cut);
      for (std::int64_t s = 1; s <= 2; ++s) log.log(row(s));
      append(cut / "metrics.jsonl", "garbage line\n{\"step\":2x,\"epoch\":1}\n");
      append(cut / "metrics.csv", "2x,1,train,0.5,0.5\n7,3,train\n");
      log.log(row(3));  // past the checkpoint: dropped
      append(cut / "metrics.jsonl", tail_json);
      append(cut / "metrics.csv", "1");
    }
    MetricsLog resumed(cut);
    ASSERT_NO_THROW(resumed.truncate_after(2)) << tail_json;
    resumed.log(row(3));
    resumed.log(row(4));
    EXPECT_EQ(read_file(cut / "metrics.jsonl"), read_file(whole / "metrics.jsonl")) << tail_json;
    EXPECT_EQ(read_file(cut / "metrics.csv"), read_file(whole / "metrics.csv")) << tail_json;
  }
  // A metrics.csv whose header was cut short is written again from the next row.
  const auto header_cut = made_dir("metrics_header_cut");
  append(header_cut / "metrics.csv", "step,epo");
  MetricsLog log(header_cut);
  log.truncate_after(0);
  for (std::int64_t s = 1; s <= 4; ++s) log.log(row(s));
  EXPECT_EQ(read_file(header_cut / "metrics.csv"), read_file(whole / "metrics.csv"));
}

TEST(Trainer, TinyResNetLearnsAToyTask) {
  auto data = toy_batches(64, 16, 16, 1);
  InMemorySource source(&data, 7);
  ResNet18 net(tiny());
  net.setup(Shape{16, 3, 16, 16}, Device::cpu());
  nn::initialize(net, 3);
  ClassifierTask task(net, Device::cpu());
  optim::Optimizer<optim::AdamW> opt(task.trainable_parameters(), optim::AdamWOptions{.weight_decay = 1e-4f});
  const auto dir = fresh_dir("learn");
  Trainer trainer(task, opt, optim::ConstantLr{3e-3f}, TrainerOptions{.epochs = 6, .out_dir = dir, .log_every = 4, .progress = false});
  // Loss before training, then after 24 steps (6 epochs of 4 batches).
  const double before = evaluate(task, source).loss;
  trainer.fit(source);
  const StepStats after = evaluate(task, source);
  EXPECT_LT(after.loss, before / 3.0) << "loss " << before << " -> " << after.loss;
  EXPECT_GT(after.metrics.at(0).second, 0.9) << "accuracy";
  // metrics files: a header plus one row per 4 steps.
  EXPECT_NE(read_file(dir / "metrics.csv").find("step,epoch,phase,loss,lr,accuracy"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Trains `epochs` epochs from scratch in `dir`; when stop_after >= 0, the data source fails after
// that many batches (an interrupted run), and the same call resumes.
struct RunOutput {
  std::vector<float> weights;
  std::string metrics;
};
RunOutput run_training(const std::filesystem::path& dir, std::int64_t stop_after) {
  auto data = toy_batches(48, 8, 16, 2);
  struct FailingSource : InMemorySource {
    using InMemorySource::InMemorySource;
    std::int64_t left = -1;
    bool next(Batch& b) {
      if (left == 0) throw Error("simulated interruption");
      if (left > 0) --left;
      return InMemorySource::next(b);
    }
  } source(&data, 11);
  source.left = stop_after;
  ResNet18 net(tiny());
  net.setup(Shape{8, 3, 16, 16}, Device::cpu());
  nn::initialize(net, 5);
  ClassifierTask task(net, Device::cpu());
  optim::Optimizer<optim::Sgd> opt(task.trainable_parameters(),
                                   optim::SgdOptions{.momentum = 0.9f, .weight_decay = 1e-4f, .nesterov = true});
  Trainer trainer(task, opt, optim::WarmupCosineLr::from_epochs(0.05f, 1, 3, source.batches_per_epoch()),
                  TrainerOptions{.epochs = 3, .out_dir = dir, .log_every = 2, .checkpoint_every = 4, .progress = false});
  trainer.fit(source);
  return {flat_weights(net), read_file(dir / "metrics.jsonl")};
}

TEST(Trainer, InterruptedAndResumedRunEqualsUninterrupted) {
  const auto a = fresh_dir("whole"), b = fresh_dir("resumed");
  const RunOutput whole = run_training(a, -1);
  // Stops in epoch 1 (6 batches per epoch) after 9 batches: the last checkpoint is at step 8.
  EXPECT_THROW(run_training(b, 9), Error);
  ASSERT_TRUE(std::filesystem::exists(b / "checkpoints" / "latest"));
  const RunOutput resumed = run_training(b, -1);
  EXPECT_EQ(resumed.weights, whole.weights);  // bitwise
  EXPECT_EQ(resumed.metrics, whole.metrics);
  std::filesystem::remove_all(a);
  std::filesystem::remove_all(b);
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastGoodCheckpoint) {
  auto data = toy_batches(32, 8, 16, 3);
  InMemorySource source(&data, 1);
  ResNet18 net(tiny());
  net.setup(Shape{8, 3, 16, 16}, Device::cpu());
  nn::initialize(net, 1);
  ClassifierTask task(net, Device::cpu());
  optim::Optimizer<optim::Sgd> opt(task.trainable_parameters(), optim::SgdOptions{});
  const auto dir = fresh_dir("nan");
  // A sane first epoch, then a learning rate that blows the weights up.
  struct Explode {
    float lr(std::int64_t step) const { return step < 4 ? 0.01f : 1e30f; }
  };
  Trainer trainer(task, opt, Explode{}, TrainerOptions{.epochs = 3, .out_dir = dir, .progress = false});
  try {
    trainer.fit(source);
    FAIL() << "no error";
  } catch (const NonFiniteError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("step-0000000004.safetensors"), std::string::npos) << msg;
  }
  const auto latest = read_latest_checkpoint(dir / "checkpoints");
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->position.step, 4);
  for (const auto& [name, t] : latest->tensors)
    for (float v : t.data) ASSERT_TRUE(std::isfinite(v)) << name;
  std::filesystem::remove_all(dir);
}

TEST(Trainer, LinearEvaluationFreezesTheBackbone) {
  auto data = toy_batches(32, 8, 16, 4);
  InMemorySource source(&data, 1);
  ResNet18 net(tiny());
  net.setup(Shape{8, 3, 16, 16}, Device::cpu());
  nn::initialize(net, 2);
  ClassifierTask task(net, Device::cpu(), ClassifierTaskOptions{.linear_eval = true});
  const auto params = task.trainable_parameters();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "fc.weight");
  EXPECT_EQ(params[1].name, "fc.bias");
  nn::StateDict before = nn::state_dict(net);
  optim::Optimizer<optim::Sgd> opt(params, optim::SgdOptions{.momentum = 0.9f});
  const auto dir = fresh_dir("linear");
  Trainer trainer(task, opt, optim::ConstantLr{0.1f}, TrainerOptions{.epochs = 1, .out_dir = dir, .progress = false});
  trainer.fit(source);
  nn::StateDict after = nn::state_dict(net);
  for (const auto& [name, t] : before) {
    if (name.rfind("fc.", 0) == 0) EXPECT_NE(after.at(name).values, t.values) << name;
    else EXPECT_EQ(after.at(name).values, t.values) << name;  // weights and running statistics
  }
  std::filesystem::remove_all(dir);
}

// Two-view batches for contrastive tasks: each sample's views are the image plus small noise.
std::vector<Batch> two_view_batches(int batches, int n, int size, std::uint64_t seed) {
  auto base = toy_batches(batches * n, n, size, seed);
  std::mt19937 gen(static_cast<unsigned>(seed) + 1);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  std::vector<Batch> out;
  for (auto& b : base) {
    const auto v = b.images.to_vector();
    std::vector<float> both(v.size() * 2);
    for (std::size_t i = 0; i < v.size(); ++i) {
      both[i] = v[i] + noise(gen);
      both[v.size() + i] = v[i] + noise(gen);
    }
    Batch t;
    t.images = Tensor::from(both, Shape{2 * n, 3, size, size});
    out.push_back(std::move(t));
  }
  return out;
}

// The number after "name": in each line of a metrics.jsonl text.
std::vector<double> jsonl_values(const std::string& jsonl, const std::string& name) {
  std::vector<double> v;
  std::istringstream in(jsonl);
  std::string line;
  const std::string key = "\"" + name + "\":";
  while (std::getline(in, line)) {
    const auto at = line.find(key);
    if (at != std::string::npos) v.push_back(std::stod(line.substr(at + key.size())));
  }
  return v;
}

TEST(Trainer, SimClrStepsAreDeterministicAndLearn) {
  auto run = [](const std::filesystem::path& dir) {
    auto data = two_view_batches(4, 8, 16, 5);
    InMemorySource source(&data, 3);
    models::ContrastiveModel<models::ResNet18Backbone> net(tiny(), 32, 16);
    net.setup(Shape{16, 3, 16, 16}, Device::cpu());
    nn::initialize(net, 9);
    SimClrTask task(net, Device::cpu(), SimClrOptions{.temperature = 0.5f});
    optim::Optimizer<optim::Lars> opt(task.trainable_parameters(), optim::LarsOptions{});
    Trainer trainer(task, opt, optim::ConstantLr{0.5f},
                    TrainerOptions{.epochs = 3, .out_dir = dir, .log_every = 1, .progress = false});
    trainer.fit(source);
    return read_file(dir / "metrics.jsonl");
  };
  const auto a = fresh_dir("simclr_a"), b = fresh_dir("simclr_b");
  const std::string la = run(a), lb = run(b);
  EXPECT_EQ(la, lb);  // bitwise-identical losses and metrics
  // The loss starts near log(2N - 1) = log(15) for unrelated embeddings and falls as views align.
  auto losses = [](const std::string& jsonl) {
    std::vector<double> v;
    std::istringstream in(jsonl);
    std::string line;
    while (std::getline(in, line)) v.push_back(std::stod(line.substr(line.find("\"loss\":") + 7)));
    return v;
  };
  const auto l = losses(la);
  ASSERT_EQ(l.size(), 12u);
  EXPECT_LT(l.front(), std::log(15.0) + 0.2);
  EXPECT_LT(l.back(), l.front() - 0.3) << "SimCLR loss did not fall: " << l.front() << " -> " << l.back();
  // Embedding health on every logged row (16 normalised rows of 16 dims, positives i and i + 8):
  // effective rank in [1, 16], alignment (squared distance of unit vectors) in [0, 4], uniformity in
  // [-8, 0].
  const auto rank = jsonl_values(la, "effective_rank"), align = jsonl_values(la, "alignment"),
             uniform = jsonl_values(la, "uniformity"), spread = jsonl_values(la, "embedding_std_scaled");
  ASSERT_EQ(rank.size(), 12u);
  ASSERT_EQ(align.size(), 12u);
  ASSERT_EQ(uniform.size(), 12u);
  ASSERT_EQ(spread.size(), 12u);
  for (std::size_t i = 0; i < rank.size(); ++i) {
    EXPECT_GE(rank[i], 1.0);
    EXPECT_LE(rank[i], 16.0);
    EXPECT_GE(align[i], 0.0);
    EXPECT_LE(align[i], 4.0);
    EXPECT_GE(uniform[i], -8.0);
    EXPECT_LE(uniform[i], 0.0);
    EXPECT_GT(spread[i], 0.0);
  }
  // The randomly initialised network maps every image close to one point (embedding_std_scaled 0.21,
  // uniformity -0.20 on the first row); training spreads the embeddings out (0.76 and -1.96 after
  // 12 steps when this test was written).
  EXPECT_LT(uniform.back(), uniform.front() - 0.5)
      << "uniformity " << uniform.front() << " -> " << uniform.back();
  EXPECT_GT(spread.back(), spread.front() + 0.2) << "spread " << spread.front() << " -> " << spread.back();
  std::filesystem::remove_all(a);
  std::filesystem::remove_all(b);
}

// The key encoder may be set up and never initialised (the pretrain driver does that): its memory
// can hold infinities or NaNs left by earlier work in the process (the NT-Xent mask's -inf), and
// MoCo's initial copy must not multiply them by 0 (0 * inf = NaN made a study's MoCo run fail at
// step 0 after a SimCLR run in the same process).
TEST(Trainer, MocoKeyEncoderStartsAsAnExactCopyWhateverItsMemoryHeld) {
  models::ContrastiveModel<models::ResNet18Backbone> q(tiny(), 32, 16), k(tiny(), 32, 16);
  q.setup(Shape{4, 3, 16, 16}, Device::cpu());
  k.setup(Shape{4, 3, 16, 16}, Device::cpu());
  nn::initialize(q, 1);
  int i = 0;
  k.visit_parameters("", [&](const std::string&, nn::Parameter& p) {
    fill(p.value,
         i++ % 2 == 0 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN());
  });
  k.visit_buffers("",
                  [&](const std::string&, Tensor& t) { fill(t, std::numeric_limits<float>::quiet_NaN()); });
  MocoTask task(q, k, Device::cpu(), 16,
                MocoOptions{.temperature = 0.2f, .momentum = 0.9f, .queue_size = 10});
  EXPECT_EQ(flat_weights(q), flat_weights(k));
  auto data = two_view_batches(1, 4, 16, 6);
  const StepStats s = task.train_step(data[0]);
  EXPECT_TRUE(std::isfinite(s.loss)) << s.loss;
}

TEST(Trainer, MocoMovesTheKeyEncoderAndFillsTheQueue) {
  auto data = two_view_batches(3, 4, 16, 6);
  InMemorySource source(&data, 3);
  models::ContrastiveModel<models::ResNet18Backbone> q(tiny(), 32, 16), k(tiny(), 32, 16);
  q.setup(Shape{4, 3, 16, 16}, Device::cpu());
  k.setup(Shape{4, 3, 16, 16}, Device::cpu());
  nn::initialize(q, 1);
  nn::initialize(k, 2);
  MocoTask task(q, k, Device::cpu(), 16, MocoOptions{.temperature = 0.2f, .momentum = 0.9f, .queue_size = 10});
  EXPECT_EQ(flat_weights(q), flat_weights(k));  // the key encoder starts as a copy
  optim::Optimizer<optim::Sgd> opt(task.trainable_parameters(), optim::SgdOptions{.momentum = 0.9f});
  const auto dir = fresh_dir("moco");
  Trainer trainer(task, opt, optim::ConstantLr{0.05f}, TrainerOptions{.epochs = 1, .out_dir = dir, .progress = false});
  trainer.fit(source);
  const auto wq = flat_weights(q), wk = flat_weights(k);
  EXPECT_NE(wq, wk);
  // the last step is logged with the embedding health of the 4 queries and their 4 keys
  const std::string log = read_file(dir / "metrics.jsonl");
  const auto rank = jsonl_values(log, "effective_rank"), align = jsonl_values(log, "alignment");
  ASSERT_EQ(rank.size(), 1u);
  EXPECT_GE(rank[0], 1.0);
  EXPECT_LE(rank[0], 8.0);
  ASSERT_EQ(align.size(), 1u);
  EXPECT_GT(align[0], 0.0);  // the key encoder differs from the query encoder
  EXPECT_LE(align[0], 4.0);
  // The checkpoint holds the queue (10 x 16), its head (3 batches of 4 into 10 slots: 2) and both encoders.
  const auto c = read_latest_checkpoint(dir / "checkpoints");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->tensors.at("queue").shape, (Shape{10, 16}));
  EXPECT_EQ(c->tensors.at("queue_head").data.at(0), 2.0f);
  EXPECT_TRUE(c->tensors.count("key_encoder.head.2.weight"));
  EXPECT_TRUE(c->tensors.count("optim.momentum.conv1.weight"));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fovea
