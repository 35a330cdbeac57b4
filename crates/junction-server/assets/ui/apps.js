// Applications (spec 004): the list, and one application's page with its
// step DAG, live step colours, Run / Debug Run / Custom Run, steps and runs.

import { $, el } from './core.js';

export function showApplications(name, focusHeading) {
  const view = $('apps-view');
  view.replaceChildren(el('h1', { tabindex: '-1', text: name ? `Application ${name}` : 'Applications' }));
  if (focusHeading) view.querySelector('h1').focus();
}

export function leaveApplications() {}
