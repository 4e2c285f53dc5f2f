import { $ } from './dom.js';
import { errorText } from './errors.js';
import { onLangChange, t } from './i18n.js';

// What is said under the login form, kept as a function so that it follows the language switch.
let loginMessage = null;
onLangChange(() => {
  if (loginMessage) $('#login-error').textContent = loginMessage();
});

/** Say why under the login form; `message` is a function giving the text, or nothing. */
export function showLoginError(message) {
  loginMessage = message || null;
  $('#login-error').textContent = loginMessage ? loginMessage() : '';
}

/** Sign in with the login form's fields; on failure say why under the form. */
export async function submitLogin(api, form) {
  const username = form.elements.namedItem('username').value.trim();
  const password = form.elements.namedItem('password').value;
  try {
    await api.login(username, password);
  } catch (error) {
    showLoginError(() => t('login.failed', { detail: errorText(error, { login: true }) }));
    return false;
  }
  form.elements.namedItem('password').value = '';
  showLoginError(null);
  return true;
}
