import { $ } from './dom.js';
import { t } from './i18n.js';

/** Sign in with the login form's fields; on failure say why under the form. */
export async function submitLogin(api, form) {
  const username = form.elements.namedItem('username').value.trim();
  const password = form.elements.namedItem('password').value;
  try {
    await api.login(username, password);
  } catch (error) {
    $('#login-error').textContent = t('login.failed', { detail: error.detail || error.message });
    return false;
  }
  form.elements.namedItem('password').value = '';
  return true;
}
