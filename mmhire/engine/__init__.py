from .hooks import WeightsOnlyCheckpointHook
from .optim_wrapper import CPUBF16OptimWrapper
from .runtime import (
                      ConfigError,
                      build_runner,
                      check_data,
                      check_pretrained,
                      convert_sync_bn,
                      prepare_test_config,
                      prepare_train_config,
)

__all__ = [
    'CPUBF16OptimWrapper', 'ConfigError', 'build_runner', 'check_data', 'check_pretrained',
    'convert_sync_bn', 'prepare_test_config', 'prepare_train_config', 'WeightsOnlyCheckpointHook'
]
