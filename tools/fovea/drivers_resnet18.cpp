// tools/fovea/drivers_resnet18.cpp: the experiment drivers instantiated for ResNet-18 (its own
// translation unit, so the architectures compile in parallel).
#include "drivers_impl.hpp"

namespace fovea::tools::drivers {
template int pretrain<models::ResNet18Backbone>(const PretrainArgs&);
template int finetune<models::ResNet18Backbone>(const FinetuneArgs&);
template EvalSummary evaluate<models::ResNet18Backbone>(const EvaluateArgs&);
template RobustnessSummary robustness<models::ResNet18Backbone>(const RobustnessArgs&);
template SaliencySummary saliency<models::ResNet18Backbone>(const SaliencyArgs&);
}  // namespace fovea::tools::drivers
