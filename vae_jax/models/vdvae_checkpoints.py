"""openai/vdvae's state_dicts as parameters of the `top_down` family built with VDVAE's model
options (configs/top_down.py: `VDVAE_MODEL`).

Keys (vae.py): `encoder.in_conv`, `encoder.enc_blocks.N.c1..c4` (in the order of its
`enc_blocks` string), `decoder.dec_blocks.N.{enc,prior,resnet}.c1..c4` and `.z_proj`,
`decoder.bias_xs.J` (the J-th smallest decoder resolution), `decoder.gain`, `decoder.bias`,
`decoder.out_net.out_conv`. PyTorch convolutions are `[out, in, kh, kw]`, Flax's
`[kh, kw, in, out]`; the output convolution's channels are reordered from VDVAE's mixture
layout (per channel: means, log-scales, coefficients) to `DiscretizedLogisticMixtureLikelihood`'s
(all means, all log-scales, all coefficients).
"""

from __future__ import annotations

import flax
import numpy as np

from vae_jax.errors import UserError
from vae_jax.models import top_down_layout

BLOCK_CONVS = {f'c{i + 1}': f'Conv_{i}' for i in range(4)}
GROUP_PARTS = {'enc': 'posterior_net', 'prior': 'prior_net', 'resnet': 'residual'}


class CheckpointMismatchError(UserError, ValueError):
  pass


def mixture_channel_order(num_components: int, channels: int = 3) -> np.ndarray:
  """`order[u]` = VDVAE's output channel that becomes our channel `u`."""
  m = num_components
  ours_to_vdvae = list(range(m))  # mixture logits first in both
  for part in range(3):  # means, log-scales, coefficients: ours part-major, VDVAE channel-major
    for c in range(channels):
      ours_to_vdvae += [m + c * 3 * m + part * m + k for k in range(m)]
  return np.asarray(ours_to_vdvae)


def _take(state: dict, key: str, used: set) -> np.ndarray:
  if key not in state:
    raise CheckpointMismatchError(
        f'The checkpoint has no {key}, which the model built from the config needs: pass the '
        '--hps the checkpoint was trained with (cifar10, imagenet32, imagenet64, ffhq256, '
        'ffhq1024).')
  used.add(key)
  return state[key]


def _conv(state: dict, prefix: str, used: set) -> dict:
  return {'kernel': np.transpose(_take(state, f'{prefix}.weight', used), (2, 3, 1, 0)),
          'bias': _take(state, f'{prefix}.bias', used)}


def _block(state: dict, prefix: str, used: set) -> dict:
  return {ours: _conv(state, f'{prefix}.{theirs}', used) for theirs, ours in BLOCK_CONVS.items()}


def params_from_state_dict(state: dict[str, np.ndarray], template, num_components: int):
  """Our parameters (shaped like `template`, the model's `init` output) from a VDVAE
  state_dict. Refuses, naming the keys, a checkpoint whose keys or shapes differ from the
  model's. VDVAE's blocks map one to one onto the unrolled layout, which is then stacked as
  the template's is (vae_jax/models/top_down_layout.py)."""
  state = {key.removeprefix('module.'): np.asarray(value) for key, value in state.items()}
  layout = flax.core.unfreeze(template)['params']
  ours = top_down_layout.unstacked(layout)
  used: set[str] = set()
  converted = {'encoder': {'Conv_0': _conv(state, 'encoder.in_conv', used)}}
  encoder_blocks = sorted((name for name in ours['encoder'] if name.startswith('block_r')),
                          key=lambda name: (-int(name[7:].split('_')[0]), int(name.split('_')[-1])))
  for index, name in enumerate(encoder_blocks):
    converted['encoder'][name] = _block(state, f'encoder.enc_blocks.{index}', used)
  groups = sorted((name for name in ours if name.startswith('groups_')),
                  key=lambda name: int(name.split('_')[1]))
  for index, name in enumerate(groups):
    prefix = f'decoder.dec_blocks.{index}'
    converted[name] = {part: _block(state, f'{prefix}.{theirs}', used)
                       for theirs, part in GROUP_PARTS.items()}
    converted[name]['z_projection'] = _conv(state, f'{prefix}.z_proj', used)
  biases = sorted((name for name in ours if name.startswith('bias_r')),
                  key=lambda name: int(name[6:]))
  for index, name in enumerate(biases):
    converted[name] = np.transpose(_take(state, f'decoder.bias_xs.{index}', used)[0], (1, 2, 0))
  converted['output_gain'] = _take(state, 'decoder.gain', used).reshape(-1)
  converted['output_bias'] = _take(state, 'decoder.bias', used).reshape(-1)
  head = _conv(state, 'decoder.out_net.out_conv', used)
  order = mixture_channel_order(num_components)
  converted['output_head'] = {'kernel': head['kernel'][..., order], 'bias': head['bias'][order]}
  return {'params': top_down_layout.stacked(_matched(converted, ours, sorted(set(state) - used)),
                                            layout)}


def _matched(converted: dict, template: dict, unused: list[str]) -> dict:
  """`converted` after checking it has exactly `template`'s leaves and shapes."""
  flat_new = flax.traverse_util.flatten_dict(converted, sep='/')
  flat_ours = flax.traverse_util.flatten_dict(template, sep='/')
  problems = [f'{name}: checkpoint {flat_new[name].shape}, model {tuple(flat_ours[name].shape)}'
              for name in sorted(flat_new) if name in flat_ours
              and tuple(flat_new[name].shape) != tuple(flat_ours[name].shape)]
  missing = sorted(set(flat_ours) - set(flat_new))
  if problems or missing or unused:
    details = '; '.join(problems[:3] + [f'model parameters with no checkpoint key: {missing[:3]}'] *
                        bool(missing) + [f'checkpoint keys the model lacks: {unused[:3]}'] *
                        bool(unused))
    raise CheckpointMismatchError(
        f'The checkpoint does not fit the model built from the config ({details}). Pass the '
        '--hps the checkpoint was trained with (cifar10, imagenet32, imagenet64, ffhq256, '
        'ffhq1024).')
  return flax.traverse_util.unflatten_dict(
      {name: np.asarray(value, flat_ours[name].dtype) for name, value in flat_new.items()},
      sep='/')


def adam_moments(optimizer_state: dict, model_state: dict[str, np.ndarray]
                 ) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]:
  """Adam's step and moments `({name: exp_avg}, {name: exp_avg_sq})` from VDVAE's `*-opt.th`
  (`optimizer.state_dict()` of apex's FusedAdam: moments by parameter index, in the order of
  `vae.parameters()`, which is the order of the keys of the `*-model.th` state_dict,
  `model_state`; the step in the parameter group, or in each parameter's state)."""
  try:
    moments, groups = optimizer_state['state'], optimizer_state['param_groups']
    indices = [index for group in groups for index in group['params']]
  except (KeyError, TypeError):
    raise CheckpointMismatchError('The optimizer file is not an optimizer state_dict (no '
                                  "'state' and 'param_groups'): pass VDVAE's *-opt.th.") from None
  parameter_names = list(model_state)
  if len(indices) != len(parameter_names) or set(moments) - set(indices):
    raise CheckpointMismatchError(
        f'The optimizer file holds {len(indices)} parameters, the model file '
        f'{len(parameter_names)}: pass the *-opt.th saved with this *-model.th.')
  steps = {int(np.asarray(group['step'])) for group in groups if 'step' in group}
  steps |= {int(np.asarray(entry['step'])) for entry in moments.values() if 'step' in entry}
  if len(steps) != 1:
    raise CheckpointMismatchError(f'The optimizer file holds steps {sorted(steps)}; expected '
                                  'one step for every parameter.')
  names = dict(zip(indices, parameter_names))
  exp_avg, exp_avg_sq = {}, {}
  for index, name in names.items():
    entry = moments.get(index, {})  # a parameter never updated has no state yet: zeros
    zeros = np.zeros(np.shape(model_state[name]), np.float32)
    exp_avg[name] = np.asarray(entry.get('exp_avg', zeros), np.float32)
    exp_avg_sq[name] = np.asarray(entry.get('exp_avg_sq', zeros), np.float32)
  return steps.pop(), exp_avg, exp_avg_sq
