// tools/fovea/drivers_resnet50.cpp: the experiment drivers instantiated for ResNet-50 (its own
// translation unit, so the architectures compile in parallel).
#include "drivers_impl.hpp"

namespace fovea::tools::drivers {
template int pretrain<models::ResNet50Backbone>(const PretrainArgs&);
template int finetune<models::ResNet50Backbone>(const FinetuneArgs&);
template EvalSummary evaluate<models::ResNet50Backbone>(const EvaluateArgs&);
template RobustnessSummary robustness<models::ResNet50Backbone>(const RobustnessArgs&);
template SaliencySummary saliency<models::ResNet50Backbone>(const SaliencyArgs&);
}  // namespace fovea::tools::drivers
