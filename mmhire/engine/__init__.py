from .dist import LaunchError
from .hooks import AtomicCheckpointHook, CompileBackboneHook, SafeLoggerHook, TrainingStateHook
from .optim_wrapper import CPUBF16OptimWrapper
from .runtime import (
                      ConfigError,
                      DataError,
                      build_runner,
                      check_data,
                      check_pretrained,
                      convert_sync_bn,
                      explain_errors,
                      prepare_test_config,
                      prepare_train_config,
                      run_loop,
                      use_torchvision_roi_align,
)

__all__ = [
    'AtomicCheckpointHook', 'CPUBF16OptimWrapper', 'CompileBackboneHook', 'ConfigError',
    'DataError', 'LaunchError',
    'SafeLoggerHook', 'TrainingStateHook', 'build_runner', 'check_data', 'check_pretrained',
    'convert_sync_bn', 'explain_errors', 'prepare_test_config', 'prepare_train_config',
    'run_loop', 'use_torchvision_roi_align'
]
