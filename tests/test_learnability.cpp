// tests/test_learnability.cpp: the data pipeline feeds the trainer (LoaderSource over data::Loader
// with the Philox-keyed augmentations), and the synthetic fundus data set is learnable: a tiny
// ResNet-18 trained for a few epochs on 120 synthetic images tells grade 0 from grades 3-4 on 40
// held-out images far better than chance. Plus a SimCLR smoke run through the two-view source and
// the source's replay (batch b of epoch e is the same from a fresh source and after a resume).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "fovea/data/synthetic.hpp"

#include "fovea/fovea.hpp"
#include "fovea/data/augment.hpp"
#include "fovea/data/dataset.hpp"
#include "fovea/data/image.hpp"
#include "fovea/models/resnet.hpp"
#include "fovea/nn/summary.hpp"
#include "fovea/optim/optim.hpp"
#include "fovea/train/sources.hpp"
#include "fovea/train/trainer.hpp"

namespace fovea {
namespace {

using namespace fovea::train;
using models::ResNetConfig;

static_assert(BatchSource<LoaderSource>);

constexpr int kSize = 64;
constexpr std::uint64_t kDataSeed = 2024;

std::filesystem::path fresh_dir(const std::string& name) {
  auto d = std::filesystem::temp_directory_path() / ("fovea_learn_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(d);
  return d;
}

// Image i of the task: label i % 2; label 0 is ICDR grade 0, label 1 alternates grades 3 and 4
// (severe NPDR, PDR: many haemorrhages in every quadrant, exudates, beading, new vessels), which a
// tiny network sees at 64 px within a few epochs. Milder grades (1-2, a few microaneurysms of
// under a pixel at 64 px) would need larger images.
int label_of(int i) { return i % 2; }
int grade_of(int i) { return label_of(i) == 0 ? 0 : 3 + (i / 2) % 2; }
// Held out: i % 4 in {2, 3}, i >= 80 (20 of each label); the other 120 train.
bool held_out(int i) { return i >= 80 && i % 4 >= 2; }

std::vector<Tensor> synthetic_images(int count) {
  data::SyntheticConfig config{.seed = kDataSeed, .size = kSize};
  std::vector<Tensor> images;
  for (int i = 0; i < count; ++i) images.push_back(data::generate_fundus(config, i, grade_of(i)).image);
  return images;
}

// The data set as the study reads it: PNG files in class folders (root/0, root/1) read back by
// load_class_folders, when stb is available; otherwise the same images in memory.
struct Splits {
  data::Dataset train, test;
  data::DecodeFn decode;  // empty: the loader's file decoder
};
Splits make_splits(const std::filesystem::path& root) {
  std::vector<Tensor> images = synthetic_images(160);
  std::vector<std::size_t> train_idx, test_idx;
  Splits s;
  if (data::kHaveImageIo) {
    std::filesystem::create_directories(root / "0");
    std::filesystem::create_directories(root / "1");
    for (int i = 0; i < 160; ++i)
      data::write_png(root / std::to_string(label_of(i)) / ("img_" + std::to_string(i) + ".png"),
                      images[static_cast<std::size_t>(i)]);
    data::Dataset all = data::load_class_folders(root);
    EXPECT_EQ(all.size(), 160u);
    EXPECT_EQ(all.num_classes, 2);
    for (std::size_t k = 0; k < all.size(); ++k) {
      const int i = std::stoi(all[k].id.substr(4));  // id "img_<i>"
      EXPECT_EQ(all[k].label, label_of(i));
      (held_out(i) ? test_idx : train_idx).push_back(k);
    }
    s.train = all.subset(train_idx);
    s.test = all.subset(test_idx);
  } else {
    std::vector<int> labels;
    for (int i = 0; i < 160; ++i) {
      labels.push_back(label_of(i));
      (held_out(i) ? test_idx : train_idx).push_back(static_cast<std::size_t>(i));
    }
    InMemoryDataset mem = make_in_memory_dataset(std::move(images), labels, 2);
    s.decode = mem.decoder(kSize);
    s.train = mem.dataset.subset(train_idx);
    s.test = mem.dataset.subset(test_idx);
  }
  return s;
}

data::LoaderOptions loader_options(std::size_t batch, bool drop_last, const data::DecodeFn& decode) {
  data::LoaderOptions o;
  o.batch_size = batch;
  o.drop_last = drop_last;
  o.image_size = kSize;
  o.threads = 1;
  o.decode = decode;
  return o;
}

TrainerOptions train_options_for(std::int64_t epochs, const std::filesystem::path& out, std::int64_t log_every) {
  TrainerOptions o;
  o.epochs = epochs;
  o.out_dir = out;
  o.log_every = log_every;
  o.progress = false;
  return o;
}

ResNetConfig tiny(int classes) { return ResNetConfig{.num_classes = classes, .width = 0.125f, .small_stem = true}; }

TEST(Learnability, TinyResNetSeparatesGradeZeroFromSevereOnHeldOutSyntheticFundi) {
  const auto dir = fresh_dir("data"), out = fresh_dir("run");
  Splits s = make_splits(dir);
  ASSERT_EQ(s.train.size(), 120u);
  ASSERT_EQ(s.test.size(), 40u);
  EXPECT_EQ(s.test.class_counts(), (std::vector<std::size_t>{20, 20}));

  // Training views: RandomResizedCrop with scale 0.5-1 (the default 0.08 often crops every lesion
  // out of a 64 px image, a label noise a 120-image run cannot absorb) and horizontal flips.
  data::AugmentConfig train_aug = data::supervised_train(kSize);
  train_aug.scale_min = 0.5f;
  const std::size_t train_size = s.train.size();
  LoaderSourceOptions train_options, test_options;
  train_options.augment = train_aug;
  train_options.augment_seed = 5;
  test_options.augment = data::test_transform(kSize);
  LoaderSource train(std::move(s.train), data::Sampler::shuffled(train_size, 11), loader_options(16, true, s.decode),
                     train_options);
  const std::size_t test_size = s.test.size();
  LoaderSource test(std::move(s.test), data::Sampler::sequential(test_size), loader_options(20, false, s.decode),
                    test_options);
  EXPECT_EQ(train.batches_per_epoch(), 7);
  EXPECT_EQ(test.batches_per_epoch(), 2);

  models::ResNet18 net(tiny(2));
  net.setup(Shape{16, 3, kSize, kSize}, Device::cpu());
  nn::initialize(net, 3);
  ClassifierTask task(net, Device::cpu());
  optim::Optimizer<optim::AdamW> opt(task.trainable_parameters(), optim::AdamWOptions{.weight_decay = 1e-4f});
  constexpr std::int64_t kEpochs = 6;
  Trainer trainer(task, opt, optim::WarmupCosineLr::from_epochs(3e-3f, 1, kEpochs, train.batches_per_epoch()),
                  train_options_for(kEpochs, out, 7));
  const StepStats before = evaluate(task, test);
  trainer.fit(train);
  const StepStats after = evaluate(task, test);
  const double accuracy = after.metrics.at(0).second;
  RecordProperty("held_out_accuracy", std::to_string(accuracy));
  RecordProperty("held_out_loss", std::to_string(before.loss) + " -> " + std::to_string(after.loss));
  // Under chance (a classifier independent of the images) the number right of 40 balanced images is
  // Binomial(40, 1/2): P(>= 32 right) = 9.1e-5, so accuracy >= 0.8 is no luck.
  EXPECT_GE(accuracy, 0.8) << "held-out accuracy " << accuracy << ", loss " << before.loss << " -> " << after.loss;
  EXPECT_LT(after.loss, before.loss) << "held-out loss did not fall";
  EXPECT_TRUE(std::filesystem::exists(out / "checkpoints" / "latest"));
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(out);
}

// Replay: a fresh source and a source resumed at batch 1 of epoch 2 give the same batch bit for
// bit; the two views of a sample differ; SimCLR runs two finite steps through the source.
TEST(Learnability, TwoViewSourceReplaysAndDrivesSimClr) {
  std::vector<Tensor> images = synthetic_images(8);
  std::vector<int> labels(8, data::kUnlabelled);
  InMemoryDataset mem = make_in_memory_dataset(std::move(images), labels);
  LoaderSourceOptions pairs;
  pairs.mode = SourceMode::two_view;
  pairs.augment = data::simclr(kSize);
  pairs.augment_seed = 9;
  auto make = [&] {
    return LoaderSource(mem.dataset, data::Sampler::shuffled(8, 3), loader_options(4, true, mem.decoder(kSize)), pairs);
  };
  LoaderSource a = make(), b = make();
  ASSERT_EQ(a.batches_per_epoch(), 2);
  Batch full0, full1, resumed;
  a.start_epoch(2, 0);
  ASSERT_TRUE(a.next(full0));
  ASSERT_TRUE(a.next(full1));
  EXPECT_FALSE(a.next(full0));
  b.start_epoch(2, 1);
  ASSERT_TRUE(b.next(resumed));
  EXPECT_EQ(resumed.ids, full1.ids);
  EXPECT_EQ(resumed.images.to_vector(), full1.images.to_vector());
  ASSERT_EQ(full1.images.shape(), (Shape{8, 3, kSize, kSize}));
  const std::vector<float> v = full1.images.to_vector();
  const std::size_t half = v.size() / 2;
  EXPECT_NE(std::vector<float>(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(half)),
            std::vector<float>(v.begin() + static_cast<std::ptrdiff_t>(half), v.end()));
  // Another epoch gives other views of the same samples.
  Batch other;
  b.start_epoch(3, 0);
  ASSERT_TRUE(b.next(other));
  EXPECT_NE(other.images.to_vector(), full0.images.to_vector());

  models::ContrastiveModel<models::ResNet18Backbone> net(tiny(2), 32, 16);
  net.setup(Shape{8, 3, kSize, kSize}, Device::cpu());
  nn::initialize(net, 4);
  SimClrTask task(net, Device::cpu(), SimClrOptions{.temperature = 0.5f});
  optim::Optimizer<optim::Lars> opt(task.trainable_parameters(), optim::LarsOptions{});
  const auto out = fresh_dir("simclr");
  LoaderSource source = make();
  Trainer trainer(task, opt, optim::ConstantLr{0.3f},
                  train_options_for(1, out, 1));
  const FitResult r = trainer.fit(source);
  EXPECT_EQ(r.position.step, 2);
  EXPECT_TRUE(std::isfinite(r.last_loss));
  EXPECT_GT(r.last_loss, 0.0);
  std::filesystem::remove_all(out);
}

}  // namespace
}  // namespace fovea
