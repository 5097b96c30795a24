r"""Your own folder of images, of any size: a small top-down hierarchical VAE
(model.family='top_down') with a discretised logistic mixture likelihood on the 8-bit pixels,
small enough to train on a CPU.

  python -m experiments.train --config=configs/images.py --config.data.name=paintings/ \
      --workdir=/tmp/paintings
  python -m experiments.train --config=configs/images.py:32 --config.data.name=paintings/ \
      --workdir=/tmp/paintings32

The variant is the side N of the square the images are trained at (default 16: a CPU run of
minutes); the hierarchy is laid out for it (resolutions N, N/2, N/4), so change the size with
the variant (`--config.data.image_size` alone must match it). Each image's shorter side is
resized to N and the centre N×N kept; EXIF orientation is applied, grey files in a colour
folder become RGB, transparency is flattened onto white, and training images are mirrored
left-right half the time (data.random_flip). Sub-folders are classes (labels), as in
torchvision's ImageFolder. Files are read on demand by grain (input_pipeline='grain').
Results: docs/results/your_data.md.
"""

from configs import default
from configs.top_down import per_dimension


def get_config(size: str = '16') -> 'ml_collections.ConfigDict':
  if not size.isdigit() or int(size) % 4 or int(size) < 4:
    raise ValueError(f'Unknown variant {size!r} of configs/images.py: give the image size, a '
                     'multiple of 4 (e.g. configs/images.py:32).')
  side = int(size)
  config = default.get_config()
  config.data.update(name='images/', image_size=side, binarization='none', random_flip=True)
  config.model.family = 'top_down'
  config.model.likelihood.update(kind='discretized_logistic_mixture', num_components=5)
  config.model.top_down.update(resolutions=(side, side // 2, side // 4), encoder_blocks=(1, 1, 1),
                               decoder_groups=(1, 1, 1), width=32, latent_channels=4)
  config.optimizer.update(name='adamw', learning_rate=1e-3, b1=0.9, b2=0.9, weight_decay=0.01,
                          warmup_steps=100)
  per_dimension(config, side * side * 3, clip=200.0, skip=400.0, eps=1e-8)
  config.input_pipeline = 'grain'  # files are read on demand, never held in memory whole
  config.batch_size = 16
  config.eval_batch_size = 100
  config.num_epochs = 50
  config.eval_every_epochs = 10
  config.log_every_steps = 50
  config.evals.images.num_images = 16
  return config
