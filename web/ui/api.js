// The JSON API under /api/v1/. Every call goes through `call`: a 401 sends the user to
// the login form (see app.js), other errors become ApiError with the field the server
// named, so forms can show the message next to it.

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field || null;
  }
}

let unauthorized = () => {};

/** Called with no arguments when a call answers 401 (session missing or expired). */
export function onUnauthorized(f) {
  unauthorized = f;
}

export async function call(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch('/api/v1' + path, init);
  } catch (e) {
    throw new ApiError(0, 'Brume does not answer (is the board on and reachable?)');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = { error: text.trim() };
    }
  }
  if (res.status === 401 && path !== '/login') {
    unauthorized();
  }
  if (!res.ok) {
    const msg = (data && data.error) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, msg, data && data.field);
  }
  return data;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body === undefined ? {} : body);
export const put = (path, body) => call('PUT', path, body);
export const del = (path) => call('DELETE', path);

/**
 * Sends a file as the raw body (`application/octet-stream`) with XMLHttpRequest, the
 * one way to see upload progress: `onProgress(sent, total)` is called as it goes.
 * Answers and errors as `call`.
 */
export function upload(path, file, headers, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', '/api/v1' + path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    for (const [k, v] of Object.entries(headers || {})) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener('progress', (e) => {
      if (onProgress) onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'the upload broke off (is the board on and reachable?)')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'the upload was cancelled')));
    xhr.addEventListener('load', () => {
      let data = null;
      if (xhr.responseText) {
        try {
          data = JSON.parse(xhr.responseText);
        } catch (e) {
          data = { error: xhr.responseText.trim() };
        }
      }
      if (xhr.status === 401) unauthorized();
      if (xhr.status < 200 || xhr.status >= 300) {
        reject(new ApiError(xhr.status, (data && data.error) || `${xhr.status} ${xhr.statusText}`, data && data.field));
      } else {
        resolve(data);
      }
    });
    xhr.send(file);
  });
}
