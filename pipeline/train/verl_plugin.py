"""Registers the VAS trainer with verl on import.

verl imports the modules named in VERL_USE_EXTERNAL_MODULES at `import verl`, in every process: `verl_overrides`
puts this module there in verl's Ray runtime env, so the TaskRunner actor that looks up `trainer.v1.trainer_mode`
finds `vas_sync` registered.
"""

from pipeline.train.verl_adapter import register_vas_trainer

VASTrainer = register_vas_trainer()
