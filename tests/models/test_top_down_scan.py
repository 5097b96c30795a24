"""The top-down family's scanned layout (model.top_down.scan, vae_jax/models/top_down_layout.py):
the scanned model computes what the unrolled one computes from the same parameters, draws the
same latents from the same key, a workdir checkpointed in the unrolled layout resumes converted
bit for bit, and a resolution whose groups differ in shape runs unrolled, saying so."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from tests.helpers import assert_trees_close
from vae_jax import models, optimizers
from vae_jax.engine import checkpointing, steps
from vae_jax.models import top_down, top_down_blocks, top_down_layout

SHAPE = (8, 8, 1)


def _model(scan: bool, **options):
  # VDVAE's options where they change the scanned code's paths: the encoder activation before
  # the down-sampling block, a stream bias per resolution, the posterior reading the stream.
  config = default.get_config().model
  config.family = 'top_down'
  config.top_down.update(resolutions=(8, 4), encoder_blocks=(3, 2), decoder_groups=(2, 3),
                         width=8, latent_channels=2, encoder_output='before_down_block',
                         stream_biases='per_resolution', posterior_input='stream', scan=scan,
                         **options)
  return models.build_model(config, SHAPE)


def _images():
  return (np.random.default_rng(0).uniform(size=(3, *SHAPE)) > 0.5).astype(np.float32)


@pytest.mark.slow
def test_the_scanned_model_computes_the_unrolled_ones_terms_and_draws():
  scanned, unrolled, x = _model(True), _model(False), _images()
  params = scanned.init(jax.random.key(0), x[:1])
  names = set(params['params'])
  assert {'groups_r4', 'groups_r8'} <= names and not any(
      top_down_layout.GROUP.fullmatch(name) for name in names)
  assert set(params['params']['encoder']) == {'Conv_0', 'blocks_r8', 'blocks_r4'}
  assert params['params']['groups_r4']['prior_net']['Conv_0']['kernel'].shape[0] == 3
  flat = {'params': top_down_layout.unstacked(params['params'])}
  # The unrolled layout is the unrolled model's own, leaf for leaf.
  assert jax.tree.structure(flat) == jax.tree.structure(
      jax.eval_shape(unrolled.init, jax.random.key(0), x[:1]))
  tight = dict(rtol=1e-5, atol=1e-5)
  key = jax.random.key(3)
  assert_trees_close(scanned.apply(params, x, key, method='sample_log_weight_terms'),
               unrolled.apply(flat, x, key, method='sample_log_weight_terms'), **tight)
  context = scanned.apply(params, x, method='encode_context')
  assert_trees_close(context, unrolled.apply(flat, x, method='encode_context'), **tight)
  for from_prior in (True, False):
    drawn = scanned.apply(params, key, context, 3, from_prior, method='draw_latents')
    assert isinstance(drawn, tuple) and len(drawn) == 5
    assert_trees_close(drawn, unrolled.apply(flat, key, context, 3, from_prior, method='draw_latents'),
                 **tight)
  assert_trees_close(scanned.apply(params, x, drawn, context, method='latent_log_densities'),
               unrolled.apply(flat, x, drawn, context, method='latent_log_densities'), **tight)
  assert_trees_close(scanned.apply(params, key, 2, 0.5, method='generate'),
               unrolled.apply(flat, key, 2, 0.5, method='generate'), **tight)


@pytest.mark.slow
def test_a_checkpoint_of_the_unrolled_layout_resumes_converted_bit_for_bit(tmp_path):
  scanned, unrolled = _model(True), _model(False)
  optimizer = optimizers.create_optimizer(default.get_config().optimizer, 10)
  state = steps.create_train_state(scanned, optimizer, SHAPE, jax.random.key(0))
  state = state.replace(step=jnp.asarray(7, jnp.int32))
  old = steps.create_train_state(unrolled, optimizer, SHAPE, jax.random.key(1))
  # The same numbers in the old layout: every parameter tree (parameters, Adam's moments).
  old = old.replace(step=state.step, params=top_down_layout.unstacked_state(state.params),
                    opt_state=top_down_layout.unstacked_state(state.opt_state))
  assert jax.tree.structure(old) == jax.tree.structure(top_down_layout.unstacked_state(state))
  assert top_down_layout.has_stacks(state) and not top_down_layout.has_stacks(old)
  manager = checkpointing.create_training_checkpoint_manager(str(tmp_path), 2)
  checkpointing.save_training_checkpoint(manager, 7, old)
  manager.wait_until_finished()
  fresh = steps.create_train_state(scanned, optimizer, SHAPE, jax.random.key(2))
  restored = checkpointing.restore_latest_readable(manager, fresh, str(tmp_path))
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  assert int(restored.step) == 7 and checkpointing.step_folders(str(tmp_path)) == [7]
  # Evaluation's restore (a step's state, read in place) converts the same way.
  evaluated = checkpointing.restore_state(str(tmp_path), fresh)
  for a, b in zip(jax.tree.leaves(evaluated), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
  # And back: stacking the unrolled tree gives the scanned model's own, bit for bit.
  assert_trees_close(top_down_layout.stacked(old.params['params'], state.params['params']),
               state.params['params'], rtol=0, atol=0)


def test_a_resolution_whose_groups_differ_in_shape_runs_unrolled_saying_so(caplog):
  model, x = _model(True), _images()
  odd = top_down_blocks.StochasticGroup(**{**top_down.module_fields(model.groups[3]),
                                           'middle': 3})
  mixed = model.clone(groups=(*model.groups[:3], odd, *model.groups[4:]))
  top_down._LOGGED.clear()  # pylint: disable=protected-access  (said once per process)
  with caplog.at_level(logging.WARNING):
    params = mixed.init(jax.random.key(0), x[:1])
    mixed.apply(params, x, jax.random.key(1), method='sample_log_weight_terms')
  said = [r for r in caplog.records if 'differ in shape' in r.getMessage()]
  assert len(said) == 1 and 'groups_3 to groups_4' in said[0].getMessage()
  assert {'groups_r4', 'groups_3', 'groups_4'} <= set(params['params'])
  assert mixed.apply(params, x, method='reconstruct').shape == x.shape
  # The same model unrolled throughout computes the same terms from the converted parameters.
  unrolled = mixed.clone(scan=False, encoder=model.encoder.clone(scan=False))
  flat = {'params': top_down_layout.unstacked(params['params'])}
  key = jax.random.key(3)
  assert_trees_close(mixed.apply(params, x, key, method='sample_log_weight_terms'),
               unrolled.apply(flat, x, key, method='sample_log_weight_terms'),
               rtol=1e-5, atol=1e-5)
