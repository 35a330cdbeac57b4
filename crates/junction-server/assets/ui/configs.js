// Configurations: list and edit; encrypted values are shown locked.

import { $, el } from './core.js';

export function showConfigurations(focusHeading) {
  const view = $('configs-view');
  view.replaceChildren(el('h1', { tabindex: '-1', text: 'Configurations' }));
  if (focusHeading) view.querySelector('h1').focus();
}

export function leaveConfigurations() {}
