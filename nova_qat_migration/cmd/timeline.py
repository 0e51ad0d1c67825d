# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.
"""``nova-qat-migration timeline``: one migration, second by second.

Reads the instance's entry of the source compute's migration history
(:mod:`nova_qat_migration.history`; its timeline,
:mod:`nova_qat_migration.timeline`) and prints it as a table, or draws it
-- actual against predicted remaining data, the actions taken as marked
events, the dirty rate against what was sent, the throttle and the XBZRLE
hit rate -- as SVG, PNG or a self-contained HTML page.

Drawing needs matplotlib, the package's ``timeline`` extra, imported only
when a file is asked for: compute nodes that never draw do without it.
"""

from __future__ import annotations

import argparse
import html
import io
import os
import re
import sys
from typing import Any, Optional

from nova_qat_migration.conf import CONF
from nova_qat_migration import exception
from nova_qat_migration import history
from nova_qat_migration import history_format
from nova_qat_migration import timeline

#: Output formats by file name suffix.
UsageError = exception.UsageError

FORMATS = ('svg', 'png', 'html')
#: What an operator installs for drawing.
EXTRA = 'nova-qat-migration[timeline]'
#: Colours of the marked events, by kind (others grey).
EVENT_COLOURS = {'downtime': 'tab:blue', 'xbzrle_cache': 'tab:green',
                 'throttle': 'tab:orange', 'post_copy': 'tab:purple',
                 'abort': 'tab:red'}
_UUID = re.compile(r'^[0-9a-f]{8}-?([0-9a-f]{4}-?){3}[0-9a-f]{12}$', re.I)


# -- finding the timeline -----------------------------------------------------

def history_file(args: argparse.Namespace) -> str:
    """The history file to read: ``--history-file``, else the one
    nova-compute writes (``[qat_migration] state_path``).
    """
    if args.history_file:
        return args.history_file
    import nova.conf  # noqa: F401 - [DEFAULT] state_path, as nova-compute
    if not args.config_file and not getattr(args, 'config_dir', None):
        # Like nova-status: nova.conf from its usual places.
        CONF(args=[], project='nova', validate_default_values=True)
    path = history.HistoryStore.path_from_conf(CONF)
    if not path:
        raise UsageError('no [qat_migration] state_path or [DEFAULT] '
                         'state_path configured: give --history-file')
    return os.path.join(path, history.FILENAME)


def load(path: str, max_entries: int) -> list:
    """The valid entries of the history file ``path``.

    :raises UsageError: no file, not a history, or no entries.
    """
    limit = history_format.read_limit(max_entries)
    try:
        with open(path, 'rb') as f:
            raw = f.read(limit + 1)
    except OSError as exc:
        raise UsageError('cannot read the migration history %s: %s'
                         % (path, exc.strerror or exc))
    if len(raw) > limit:
        raise UsageError('%s is larger than %d bytes: not a migration '
                         'history' % (path, limit))
    try:
        items = history_format.parse(raw)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise UsageError('%s is not a migration history (%s)'
                         % (path, str(exc)[:120]))
    entries = [e for e in (history_format.clean_entry(i)[0] for i in items)
               if e]
    if not entries:
        raise UsageError('the migration history %s holds no migration'
                         % path)
    return entries


def find(entries: list, instance: str, path: str) -> dict:
    """The timeline of ``instance``: a UUID, the libvirt domain name
    (``instance-0000002a``) or the server's name, if only one has it.

    :raises UsageError: unknown, ambiguous, or without a timeline.
    """
    wanted = instance.strip()
    matches = [e for e in entries if e['uuid'] == wanted]
    if not matches and _UUID.match(wanted):
        matches = [e for e in entries
                   if e['uuid'].replace('-', '').lower() ==
                   wanted.replace('-', '').lower()]
    if not matches:
        for key in ('name', 'display_name'):
            matches = [e for e in entries
                       if isinstance(e.get(history_format.TIMELINE), dict) and
                       e[history_format.TIMELINE].get(key) == wanted]
            if matches:
                break
    if not matches:
        raise UsageError('no migration of %s in %s (a UUID, a libvirt '
                         'domain name or a server name of an instance '
                         'migrated from this host)' % (wanted, path))
    if len(matches) > 1:
        raise UsageError('%s names %d instances (%s): give the UUID'
                         % (wanted, len(matches), ', '.join(
                                 e['uuid'] for e in matches)))
    entry = matches[0]
    data = timeline.clean(entry.get(history_format.TIMELINE))
    if not data:
        raise UsageError(
            'no timeline kept for %s in %s: it was migrated by an older '
            'version, or before the last %d instances migrated from this '
            'host' % (entry['uuid'], path, history_format.TIMELINES_KEPT))
    return data


# -- text ---------------------------------------------------------------------

def _num(value: Any, fmt: str, scale: float = 1.0) -> str:
    return '-' if value is None else fmt % (value * scale)


def _events_text(events: list) -> str:
    parts = []
    for event in events:
        value = event.get('value')
        text = event['kind']
        if value is not None:
            unit = {'downtime': 'ms', 'xbzrle_cache': 'MiB',
                    'throttle': '%'}.get(event['kind'], '')
            text += ' %g%s' % (value, unit)
        parts.append(text)
    return ', '.join(parts)


def headline(data: dict) -> list:
    """Two or three lines saying what the migration was and how it ended:
    the figure's title and the table's heading.
    """
    who = data.get('name') or data.get('instance') or '?'
    if data.get('display_name'):
        who += ' (%s)' % data['display_name']
    ended = data.get('outcome') or 'unknown outcome'
    if data.get('total_s') is not None:
        ended += ' after %.1f s' % data['total_s']
    if data.get('downtime_ms') is not None:
        ended += ', downtime %.0f ms' % data['downtime_ms']
    lines = ['%s from %s: %s' % (who, data.get('host') or '?', ended)]
    plan = 'plan %s' % (data.get('plan') or 'unknown')
    if data.get('requested') and data['requested'] != data.get('plan'):
        plan += ' (requested %s)' % data['requested']
    lines.append(plan)
    if data.get('prediction'):
        lines.append('model: %s' % data['prediction'])
    return lines


def rows(data: dict, last: Optional[int] = None) -> list:
    """``(sample, events)`` pairs: each sample with the events since the
    one before it (the first with every earlier one, the last with every
    later one); only the last ``last`` samples when given.
    """
    samples = data.get('samples') or []
    events = sorted(data.get('events') or [], key=lambda e: e['t'])
    out = []
    j = 0
    for i, sample in enumerate(samples):
        mine = []
        final = i == len(samples) - 1
        while j < len(events) and (final or events[j]['t'] <= sample[0]):
            mine.append(events[j])
            j += 1
        out.append((sample, mine))
    if last is not None:
        out = out[-last:] if last else []
    return out


def table(data: dict, last: Optional[int] = None) -> str:
    """The timeline as a compact text table."""
    lines = list(headline(data))
    shown = rows(data, last)
    hidden = len(data.get('samples') or []) - len(shown)
    if hidden:
        lines.append('(%d earlier samples not shown)' % hidden)
    lines.append('%7s %10s %10s %9s %5s %5s %6s %10s  %s' % (
        'time s', 'left MiB', 'sent MiB', 'dirty/s', 'iter', 'thr%',
        'hit%', 'model MiB', 'action'))
    for sample, events in shown:
        t, left, sent, dirty, iteration, throttle, hit, model = sample
        lines.append(('%7.1f %10s %10s %9s %5s %5s %6s %10s  %s' % (
            t, _num(left, '%.1f'), _num(sent, '%.1f'), _num(dirty, '%.1f'),
            _num(iteration, '%d'), _num(throttle, '%d'),
            _num(hit, '%.0f', 100.0), _num(model, '%.1f'),
            _events_text(events))).rstrip())
    if not shown:
        lines.append('(no samples: the job ended before the monitor '
                     'looked)')
    return '\n'.join(lines) + '\n'


# -- drawing ------------------------------------------------------------------

def _pyplot() -> Any:
    """matplotlib's pyplot on a file-only backend, or a UsageError."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot
    except ImportError:
        raise UsageError('drawing needs matplotlib: install %s' % EXTRA)
    return pyplot


def _sent_rates(samples: list) -> tuple:
    """``(times, MiB/s)`` sent between consecutive samples."""
    times, rates = [], []
    for before, after in zip(samples, samples[1:]):
        dt = after[0] - before[0]
        if dt > 0 and before[2] is not None and after[2] is not None:
            times.append(after[0])
            rates.append(max(0.0, (after[2] - before[2]) / dt))
    return times, rates


def figure(data: dict, last: Optional[int] = None) -> Any:
    """The timeline drawn on a matplotlib figure (closed by the caller)."""
    plt = _pyplot()
    shown = rows(data, last)
    samples = [s for s, _ in shown]
    events = [e for _, evs in shown for e in evs]
    t = [s[0] for s in samples]
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(10, 6.5),
        gridspec_kw={'height_ratios': [3, 2]})
    top.plot(t, [s[1] for s in samples], color='black', linewidth=1.6,
             label='remaining (libvirt)')
    predicted = data.get('predicted') or []
    if samples and last is not None:
        # The model's line from the first sample shown to its end.
        predicted = [p for p in predicted if p[0] >= t[0]]
    if predicted:
        top.plot([p[0] for p in predicted], [p[1] for p in predicted],
                 color='tab:gray', linestyle='--', linewidth=1.2,
                 label='remaining (model)')
    top.set_ylabel('MiB to send')
    top.set_ylim(bottom=0)
    bottom.plot(t, [s[3] for s in samples], color='tab:red',
                linewidth=1.2, label='dirtied MiB/s')
    sent_t, sent = _sent_rates(samples)
    bottom.plot(sent_t, sent, color='tab:blue', linewidth=1.2,
                label='sent MiB/s')
    if data.get('link_mbps'):
        bottom.axhline(data['link_mbps'], color='tab:blue', linestyle=':',
                       linewidth=0.9, label='link MiB/s')
    bottom.set_ylabel('MiB/s')
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel('seconds since the migration job started')
    pct = bottom.twinx()
    pct.step(t, [s[5] for s in samples], where='post', color='tab:orange',
             linewidth=1.2, label='throttle %')
    hits = [(s[0], s[6] * 100.0) for s in samples if s[6] is not None]
    if hits:
        pct.plot([h[0] for h in hits], [h[1] for h in hits],
                 color='tab:green', marker='.', linewidth=1.0,
                 label='XBZRLE hit %')
    pct.set_ylim(0, 105)
    pct.set_ylabel('%')
    marks = [(e['t'], _events_text([e]),
              EVENT_COLOURS.get(e['kind'], 'tab:gray')) for e in events]
    end = data.get('job_s') or (t[-1] if t else None)
    if end is not None and (last is None or not t or end >= t[0]):
        marks.append((end, data.get('outcome') or 'end', 'black'))
    for when, text, colour in marks:
        for ax in (top, bottom):
            ax.axvline(when, color=colour, alpha=0.5, linewidth=0.9)
        top.annotate(text, (when, 0.99), xycoords=('data', 'axes fraction'),
                     rotation=90, fontsize=7, va='top', ha='right',
                     color=colour)
    top.legend(loc='best', fontsize=8)
    handles, labels = bottom.get_legend_handles_labels()
    more, more_labels = pct.get_legend_handles_labels()
    pct.legend(handles + more, labels + more_labels, loc='best',
               fontsize=8, ncol=2)
    top.set_title('\n'.join(headline(data)), fontsize=9, loc='left')
    fig.tight_layout()
    return fig


def render(data: dict, fmt: str, last: Optional[int] = None) -> bytes:
    """The timeline as ``svg``, ``png`` or ``html`` bytes."""
    plt = _pyplot()
    title = headline(data)[0]
    image = 'png' if fmt == 'png' else 'svg'
    # Text as text (searchable, selectable) and stable ids: the same
    # timeline gives the same file.
    with plt.rc_context({'svg.fonttype': 'none',
                         'svg.hashsalt': 'nova-qat-migration'}):
        fig = figure(data, last)
        try:
            buf = io.BytesIO()
            metadata = {'Title': title}
            if image == 'svg':
                metadata['Date'] = None
            fig.savefig(buf, format=image, dpi=110, metadata=metadata)
        finally:
            plt.close(fig)
    if fmt != 'html':
        return buf.getvalue()
    return page(data, buf.getvalue().decode('utf-8'), table(data, last))


def page(data: dict, svg: str, text: str) -> bytes:
    """A self-contained HTML page: the drawing and the table."""
    svg = svg[svg.find('<svg'):]    # no XML prolog inside HTML
    title = html.escape(headline(data)[0])
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n'
            '<meta charset="utf-8">\n<title>%s</title>\n'
            '<style>body{font-family:sans-serif;margin:1em}'
            'svg{max-width:100%%;height:auto}'
            'pre{font-size:12px}</style>\n</head>\n<body>\n'
            '<h1>%s</h1>\n%s\n<pre>%s</pre>\n</body>\n</html>\n'
            % (title, title, svg, html.escape(text))).encode('utf-8')


def write(path: str, draw: Any) -> None:
    """Write what ``draw()`` returns to ``path``, opened first: a path
    that cannot be written fails before the drawing is made.

    :raises UsageError: ``path`` cannot be written.
    """
    try:
        with open(path, 'wb') as f:
            f.write(draw())
    except OSError as exc:
        raise UsageError('cannot write %s: %s'
                         % (path, exc.strerror or exc))


# -- the command --------------------------------------------------------------

def cmd_timeline(args: argparse.Namespace) -> int:
    fmt = None
    if args.output:
        fmt = os.path.splitext(args.output)[1].lstrip('.').lower()
        if fmt not in FORMATS:
            raise UsageError('--output must end in .%s, got %s'
                             % (', .'.join(FORMATS), args.output))
    path = history_file(args)
    data = find(load(path, CONF.qat_migration.history_max_entries),
                args.instance, path)
    if fmt is None:
        sys.stdout.write(table(data, args.last))
        return 0
    _pyplot()   # without matplotlib, fail before the file is created
    write(args.output, lambda: render(data, fmt, args.last))
    print('wrote %s' % args.output)
    return 0


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError('%s is negative' % text)
    return value


def add_parsers(subparsers: Any) -> None:
    """Register ``timeline`` on the main CLI."""
    p = subparsers.add_parser(
        'timeline',
        help="draw an instance's last live migration from this host: "
             'remaining data against the prediction, actions, dirty '
             'rate, throttle, XBZRLE hits',
        description='Reads the migration history nova-compute keeps on '
                    'the source host ([qat_migration] state_path, from '
                    '--config-file before the subcommand or the usual '
                    'nova.conf) and prints the instance\'s last migration '
                    'as a table, or draws it into --output. Drawing needs '
                    'matplotlib (pip install %s).' % EXTRA)
    p.add_argument('instance', metavar='INSTANCE',
                   help='instance UUID, libvirt domain name '
                        '(instance-0000002a) or server name')
    p.add_argument('--last', type=_count, metavar='N',
                   help='only the last N samples')
    p.add_argument('--output', metavar='FILE',
                   help='draw into FILE.svg, FILE.png or FILE.html (the '
                        'drawing and the table in one page)')
    p.add_argument('--history-file', metavar='PATH',
                   help='history.json to read (default: the one under '
                        "nova-compute's [qat_migration] state_path)")
    p.set_defaults(func=cmd_timeline)
