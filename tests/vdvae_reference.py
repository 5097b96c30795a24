"""openai/vdvae's network, written here in numpy (float64) from its vae.py and vae_helpers.py,
to check imported checkpoints against: an independent computation of the same network.

`TINY` is a small layout in VDVAE's own strings; `state_dict(TINY, seed)` draws random
parameters under VDVAE's key names (what `torch.save(vae.state_dict())` holds), and
`forward(state, TINY, x)` runs VDVAE's encoder and decoder with each z at its posterior mean,
scoring x with VDVAE's loss (its branch for bins below 1e-5 included; `small_bins=False` drops
it). `optimizer_state_dict` is what VDVAE's `*-opt.th` holds, and `save_like_torch` writes such
objects in `torch.save`'s zip format without torch.
"""

import collections
import io
import pickle
import zipfile

import numpy as np
from scipy import special

TINY = dict(enc_blocks='32d2,16d2,8x1', dec_blocks='8x1,16m8,32m16', width=16, zdim=4,
            num_mixtures=10, shift=-120.63838, scale=1 / 64.16736)


def parse_layer_string(spec):  # vdvae/vae.py
  layers = []
  for part in spec.split(','):
    if 'x' in part:
      res, num = part.split('x')
      layers += [(int(res), None)] * int(num)
    elif 'm' in part:
      res, mixin = part.split('m')
      layers.append((int(res), int(mixin)))
    elif 'd' in part:
      res, down = part.split('d')
      layers.append((int(res), int(down)))
    else:
      layers.append((int(part), None))
  return layers


def state_dict(hps, seed=0):
  """Random parameters (biases, gains and stream biases too, so misplaced ones show) keyed as
  VDVAE's `VAE.state_dict()`; torch layout `[out, in, kh, kw]`."""
  rng = np.random.default_rng(seed)
  width, zdim, mid = hps['width'], hps['zdim'], int(hps['width'] * 0.25)
  state = {}

  def conv(name, cin, cout, k):
    state[f'{name}.weight'] = rng.normal(0, 1 / np.sqrt(cin * k * k), (cout, cin, k, k))
    state[f'{name}.bias'] = rng.normal(0, 0.1, (cout,))

  def block(name, cin, cout, res):
    k = 3 if res > 2 else 1
    conv(f'{name}.c1', cin, mid, 1)
    conv(f'{name}.c2', mid, mid, k)
    conv(f'{name}.c3', mid, mid, k)
    conv(f'{name}.c4', mid, cout, 1)

  conv('encoder.in_conv', 3, width, 3)
  for i, (res, _) in enumerate(parse_layer_string(hps['enc_blocks'])):
    block(f'encoder.enc_blocks.{i}', width, width, res)
  resolutions = set()
  for i, (res, _) in enumerate(parse_layer_string(hps['dec_blocks'])):
    block(f'decoder.dec_blocks.{i}.enc', 2 * width, 2 * zdim, res)
    block(f'decoder.dec_blocks.{i}.prior', width, 2 * zdim + width, res)
    conv(f'decoder.dec_blocks.{i}.z_proj', zdim, width, 1)
    block(f'decoder.dec_blocks.{i}.resnet', width, width, res)
    resolutions.add(res)
  for j, res in enumerate(sorted(resolutions)):
    state[f'decoder.bias_xs.{j}'] = rng.normal(0, 0.1, (1, width, res, res))
  state['decoder.gain'] = 1 + rng.normal(0, 0.1, (1, width, 1, 1))
  state['decoder.bias'] = rng.normal(0, 0.1, (1, width, 1, 1))
  conv('decoder.out_net.out_conv', width, hps['num_mixtures'] * 10, 1)
  return state


def _conv(x, state, name):
  """torch.nn.Conv2d (stride 1, 'same' padding) on NHWC."""
  w, b = state[f'{name}.weight'], state[f'{name}.bias']
  k = w.shape[-1]
  pad = k // 2
  xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  h, wd = x.shape[1:3]
  out = sum(np.einsum('bhwi,oi->bhwo', xp[:, i:i + h, j:j + wd], w[:, :, i, j])
            for i in range(k) for j in range(k))
  return out + b


def _gelu(x):  # torch.nn.functional.gelu: exact
  return 0.5 * x * (1 + special.erf(x / np.sqrt(2)))


def _block(x, state, name, residual, down_rate=None):
  h = x
  for c in ('c1', 'c2', 'c3', 'c4'):
    h = _conv(_gelu(h), state, f'{name}.{c}')
  out = x + h if residual else h
  if down_rate:
    b, hh, ww, c = out.shape
    out = out.reshape(b, hh // down_rate, down_rate, ww // down_rate, down_rate, c).mean((2, 4))
  return out


def _normal_log_pdf(z, mean, logsigma):
  return (-0.5 * np.log(2 * np.pi) - logsigma - 0.5 * ((z - mean) / np.exp(logsigma))**2)


def _dmol_log_prob(x, l, nr_mix, small_bins=True):
  """vae_helpers.discretized_mix_logistic_loss, negated and not divided: log p(x) per image.
  `small_bins=False` replaces its branch for bins of probability below 1e-5 (the density at the
  bin's midpoint times its width) by the bin's probability (vae_jax's small_bins='exact')."""
  xs = x.shape
  logit_probs = l[..., :nr_mix]
  l = l[..., nr_mix:].reshape(*xs, nr_mix * 3)
  means, log_scales = l[..., :nr_mix], np.maximum(l[..., nr_mix:2 * nr_mix], -7.0)
  coeffs = np.tanh(l[..., 2 * nr_mix:3 * nr_mix])
  x = x[..., None] + np.zeros(nr_mix)
  m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
  m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
  means = np.stack([means[..., 0, :], m2, m3], axis=-2)
  centered, inv = x - means, np.exp(-log_scales)
  plus, minus = inv * (centered + 1 / 255), inv * (centered - 1 / 255)
  cdf_delta = special.expit(plus) - special.expit(minus)
  mid = inv * centered
  log_pdf_mid = mid - log_scales - 2 * np.logaddexp(0, mid)
  inside = np.log(np.maximum(cdf_delta, 1e-12))
  if small_bins:
    inside = np.where(cdf_delta > 1e-5, inside, log_pdf_mid - np.log(127.5))
  log_probs = np.where(x < -0.999, plus - np.logaddexp(0, plus),
                       np.where(x > 0.999, -np.logaddexp(0, minus), inside))
  log_probs = log_probs.sum(-2) + special.log_softmax(logit_probs, -1)
  return special.logsumexp(log_probs, -1).sum((1, 2))


def forward(state, hps, images, small_bins=True):
  """VDVAE's VAE on 8-bit `images` (k/255, NHWC), each z its posterior mean: returns
  {'reconstruction', 'log_prior', 'log_posterior'} per image and the posterior means.
  `small_bins=False`: the exact bin probability everywhere (see `_dmol_log_prob`)."""
  k = np.round(images * 255)
  x = (k + hps['shift']) * hps['scale']
  target = (k - 127.5) / 127.5
  h = _conv(x, state, 'encoder.in_conv')
  activations = {h.shape[1]: h}
  for i, (res, down) in enumerate(parse_layer_string(hps['enc_blocks'])):
    h = _block(h, state, f'encoder.enc_blocks.{i}', residual=True, down_rate=down)
    activations[h.shape[1]] = h
  biases = {state[f'decoder.bias_xs.{j}'].shape[-1]: state[f'decoder.bias_xs.{j}']
            for j in range(sum(key.startswith('decoder.bias_xs.') for key in state))}
  xs = {res: np.broadcast_to(b.transpose(0, 2, 3, 1), (len(images), res, res, b.shape[1]))
        for res, b in biases.items()}
  zdim, log_prior, log_posterior, means = hps['zdim'], 0.0, 0.0, []
  for i, (res, mixin) in enumerate(parse_layer_string(hps['dec_blocks'])):
    name = f'decoder.dec_blocks.{i}'
    stream = xs.get(res, np.zeros_like(activations[res]))
    if mixin is not None:
      factor = res // mixin
      stream = stream + xs[mixin][..., :stream.shape[-1]].repeat(factor, 1).repeat(factor, 2)
    q = _block(np.concatenate([stream, activations[res]], -1), state, f'{name}.enc', False)
    feats = _block(stream, state, f'{name}.prior', False)
    qm, qv, pm, pv = q[..., :zdim], q[..., zdim:], feats[..., :zdim], feats[..., zdim:2 * zdim]
    stream = stream + feats[..., 2 * zdim:]
    z = qm
    log_prior += _normal_log_pdf(z, pm, pv).sum((1, 2, 3))
    log_posterior += _normal_log_pdf(z, qm, qv).sum((1, 2, 3))
    means.append(z)
    stream = stream + _conv(z, state, f'{name}.z_proj')
    xs[res] = _block(stream, state, f'{name}.resnet', True)
  size = images.shape[1]
  out = xs[size] * state['decoder.gain'].reshape(-1) + state['decoder.bias'].reshape(-1)
  logits = _conv(out, state, 'decoder.out_net.out_conv')
  return ({'reconstruction': _dmol_log_prob(target, logits, hps['num_mixtures'], small_bins),
           'log_prior': log_prior, 'log_posterior': log_posterior}, means)


def save_with_torch(state, path):
  """Writes `state` as VDVAE does: `torch.save` of a dict of float32 tensors (needs torch)."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.save({key: torch.tensor(value, dtype=torch.float32) for key, value in state.items()},
             path)


def optimizer_state_dict(state, seed=0, step=1000, lr=2e-4, wd=0.01):
  """What VDVAE's `*-opt.th` holds (`torch.save(optimizer.state_dict())` of apex's FusedAdam, in
  AdamW mode): Adam's moments per parameter index, in the order of `vae.parameters()` (the
  state_dict's), and one parameter group whose `step` counts the updates taken."""
  rng = np.random.default_rng(seed)
  moments = {index: {'exp_avg': rng.normal(0, 1e-3, value.shape).astype(np.float32),
                     'exp_avg_sq': rng.uniform(1e-8, 1e-6, value.shape).astype(np.float32)}
             for index, value in enumerate(state.values())}
  group = {'lr': lr, 'bias_correction': True, 'betas': (0.9, 0.9), 'eps': 1e-8,
           'weight_decay': wd, 'amsgrad': False, 'step': step, 'initial_lr': lr,
           'params': list(range(len(state)))}
  return {'state': moments, 'param_groups': [group]}


class _TorchName:
  """A name in torch's modules, pickled as a GLOBAL (without torch installed)."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle asks a reduce function to be callable; never called
    raise TypeError(f'{self.module}.{self.name} is a name for pickles only.')


class _Storage:

  def __init__(self, array, key):
    self.array, self.key = array, key


class _Tensor:

  def __init__(self, storage):
    self.storage = storage

  def __reduce__(self):
    array = self.storage.array
    strides = tuple(step // array.itemsize for step in array.strides)
    return (_TorchName('torch._utils', '_rebuild_tensor_v2'),
            (self.storage, 0, array.shape, strides, False, collections.OrderedDict()))


_STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
                  np.dtype(np.int64): 'LongStorage'}


class _TorchPickler(pickle._Pickler):  # pylint: disable=protected-access
  """The pure-Python pickler, writing `_TorchName`s as globals and storages as torch's
  persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def _save_torch_name(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
    self.memoize(obj)

  dispatch[_TorchName] = _save_torch_name

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ('storage', _TorchName('torch', _STORAGE_NAMES[obj.array.dtype]), obj.key, 'cpu',
              obj.array.size)
    return None


def save_like_torch(obj, path):
  """Writes `obj` (dicts, lists and tuples of numbers and numpy arrays) in the zip format of
  `torch.save`, without torch: a tensor pickled as `_rebuild_tensor_v2` over a storage record."""
  storages = []

  def tensors(value):
    if isinstance(value, np.ndarray):
      storages.append(_Storage(np.ascontiguousarray(value), str(len(storages))))
      return _Tensor(storages[-1])
    if isinstance(value, dict):
      return type(value)((key, tensors(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
      return type(value)(tensors(item) for item in value)
    return value

  buffer = io.BytesIO()
  _TorchPickler(buffer, protocol=2).dump(tensors(obj))
  with zipfile.ZipFile(path, 'w') as archive:
    archive.writestr('archive/data.pkl', buffer.getvalue())
    archive.writestr('archive/byteorder', 'little')
    for storage in storages:
      archive.writestr(f'archive/data/{storage.key}', storage.array.tobytes())
    archive.writestr('archive/version', '3\n')


if __name__ == '__main__':
  # Writes the checkpoints tests/data holds (torch.save of state_dict(TINY, 0) and (TINY, 1)):
  #   python -m tests.vdvae_reference
  save_with_torch(state_dict(TINY, 0), 'tests/data/vdvae_tiny-model.th')
  save_with_torch(state_dict(TINY, 1), 'tests/data/vdvae_tiny-model-ema.th')
