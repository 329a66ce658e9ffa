// fovea/optim/optim.hpp: everything of the training engine's optimizer side: Optimizer<Sgd|AdamW|
// Lars>, schedules and learning-rate scaling, gradient clipping, EMA.
#pragma once

#include "fovea/optim/adamw.hpp"
#include "fovea/optim/clip.hpp"
#include "fovea/optim/ema.hpp"
#include "fovea/optim/lars.hpp"
#include "fovea/optim/optimizer.hpp"
#include "fovea/optim/schedule.hpp"
#include "fovea/optim/sgd.hpp"
