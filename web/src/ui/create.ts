/**
 * The dialog that starts a session: a shell or a command, given as a
 * command line (run by `/bin/sh -c`) or an argv (JSON array or quoted
 * words), with a working directory and a project.
 */

import { parseArgv } from '../state/sessions';
import type { CreateRequest } from '../net/api';
import { h } from './dom';

export function createDialog(submit: (req: CreateRequest) => Promise<void>): { el: HTMLDialogElement; open(): void } {
  const kind = h('select', { name: 'kind', 'aria-label': 'Kind' }, h('option', { value: 'pty' }, 'Terminal (pty)'), h('option', { value: 'command' }, 'Command (stdout and stderr apart)'));
  const how = h('select', { name: 'how', 'aria-label': 'Program given as' }, h('option', { value: 'line' }, 'Command line'), h('option', { value: 'argv' }, 'Argv'));
  const program = h('input', { name: 'program', placeholder: 'empty: your shell', autocomplete: 'off', spellcheck: 'false' });
  const cwd = h('input', { name: 'cwd', placeholder: 'server default', autocomplete: 'off', spellcheck: 'false' });
  const project = h('input', { name: 'project', placeholder: 'default', autocomplete: 'off', spellcheck: 'false' });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const label = (text: string, input: HTMLElement) => h('label', {}, h('span', {}, text), input);
  const form = h(
    'form',
    { method: 'dialog', class: 'create-form' },
    h('h2', {}, 'Start a session'),
    label('Kind', kind),
    label('Program as', how),
    label('Program', program),
    label('Working directory', cwd),
    label('Project', project),
    error,
    h('div', { class: 'form-buttons' }, h('button', { type: 'button', value: 'cancel', onclick: () => dialog.close() }, 'Cancel'), h('button', { type: 'submit', class: 'primary' }, 'Start')),
  );
  const dialog = h('dialog', { class: 'create-dialog', 'aria-label': 'Start a session' }, form);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    error.textContent = '';
    const req: CreateRequest = { kind: kind.value as 'pty' | 'command' };
    try {
      const text = program.value.trim();
      if (text !== '') {
        if (how.value === 'argv') req.argv = parseArgv(text)!;
        else req.command = text;
      } else if (req.kind === 'command') {
        throw new Error('a command session needs a program');
      }
      if (cwd.value.trim()) req.cwd = cwd.value.trim();
      if (project.value.trim()) req.project = project.value.trim();
      await submit(req);
      dialog.close();
    } catch (err) {
      error.textContent = err instanceof Error ? err.message : String(err);
    }
  });
  return {
    el: dialog,
    open() {
      error.textContent = '';
      dialog.showModal();
      program.focus();
    },
  };
}
