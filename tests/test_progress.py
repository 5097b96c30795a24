"""vae_jax/progress.py: progress lines of long evaluations, with a fake clock."""

from vae_jax import progress


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


def test_lines_come_at_most_every_interval_with_rate_and_time_left():
  lines, clock = [], FakeClock()
  tracker = progress.Tracker('ais', every_seconds=10.0, log=lambda f, *a: lines.append(f % a),
                             clock=clock)
  tracker.start_pass(1000)
  for done in range(100, 1001, 100):  # 100 examples every 4 s
    clock.now += 4.0
    tracker.advance(done)
  # Lines at 12 s (300 done) and 24 s (600), 36 s (900): 25 examples/s.
  assert lines == ['ais: 300/1000 examples, 25.0 examples/s, 0:00:28 left.',
                   'ais: 600/1000 examples, 25.0 examples/s, 0:00:16 left.',
                   'ais: 900/1000 examples, 25.0 examples/s, 0:00:04 left.']


def test_a_second_pass_is_counted_and_timed_afresh():
  lines, clock = [], FakeClock()
  tracker = progress.Tracker('is', every_seconds=0.0, log=lambda f, *a: lines.append(f % a),
                             clock=clock)
  tracker.start_pass(10)
  clock.now = 100.0
  tracker.advance(10)
  tracker.start_pass(10)
  clock.now = 101.0
  tracker.advance(5)
  assert lines[-1] == 'is: 5/10 examples (pass 2), 5.0 examples/s, 0:00:01 left.'


def test_outside_tracking_nothing_is_logged_and_inside_the_current_tracker_is_used():
  progress.start_pass(10)  # no tracker: no effect, no error
  progress.advance(5)
  lines = []
  with progress.tracking('elbo', every_seconds=0.0, log=lambda f, *a: lines.append(f % a)):
    progress.start_pass(4)
    progress.advance(2)
  progress.advance(3)
  assert len(lines) == 1 and lines[0].startswith('elbo: 2/4 examples')


def test_durations_read_as_hours_minutes_seconds():
  assert progress.format_duration(3723.4) == '1:02:03'
  assert progress.format_duration(0) == '0:00:00'
