// tools/fovea/drivers_resnet34.cpp: the experiment drivers instantiated for ResNet-34 (its own
// translation unit, so the architectures compile in parallel).
#include "drivers_impl.hpp"

namespace fovea::tools::drivers {
template int pretrain<models::ResNet34Backbone>(const PretrainArgs&);
template int finetune<models::ResNet34Backbone>(const FinetuneArgs&);
template EvalSummary evaluate<models::ResNet34Backbone>(const EvaluateArgs&);
template RobustnessSummary robustness<models::ResNet34Backbone>(const RobustnessArgs&);
template SaliencySummary saliency<models::ResNet34Backbone>(const SaliencyArgs&);
}  // namespace fovea::tools::drivers
