//! The automation API: triggers and their runs, recent events, GPIO pins, pushes.

use super::{change_config, parse_body, prefix_field, Admin, ApiError, ApiResult};
use crate::config::{Gpio, Push, Trigger, EVENTS};
use crate::controller::{gpio, push, Shared};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

#[derive(serde::Deserialize)]
pub struct Limit {
    limit: Option<usize>,
}

pub async fn get_triggers(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let triggers = state.config.lock().expect("config lock").triggers.clone();
    Json(json!({ "triggers": triggers, "events": EVENTS }))
}

/// Replaces the trigger list (validated with the rest of the configuration).
pub async fn put_triggers(
    State(state): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        triggers: Vec<Trigger>,
    }
    let b: Body = parse_body(&body)?;
    let config = change_config(&state, move |c| {
        c.triggers = b.triggers;
        Ok(())
    })
    .await?;
    tracing::info!(triggers = config.triggers.len(), "triggers updated");
    Ok(Json(
        json!({ "triggers": config.triggers, "events": EVENTS }),
    ))
}

pub async fn runs(State(state): State<Shared>, _: Admin, Query(q): Query<Limit>) -> Json<Value> {
    Json(json!({ "runs": state.events.runs(q.limit.unwrap_or(100).min(500)) }))
}

pub async fn recent_events(
    State(state): State<Shared>,
    _: Admin,
    Query(q): Query<Limit>,
) -> Json<Value> {
    Json(json!({ "events": state.events.recent(q.limit.unwrap_or(100).min(500)) }))
}

pub async fn get_gpio(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let mut v = gpio::status(&state);
    v["config"] = json!(state.config.lock().expect("config lock").gpio);
    Json(v)
}

/// Replaces the GPIO configuration (`null` removes it).
pub async fn put_gpio(
    State(state): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let g: Option<Gpio> = parse_body(&body)?;
    change_config(&state, move |c| {
        c.gpio = g;
        Ok(())
    })
    .await?;
    tracing::info!("gpio configuration updated");
    let mut v = gpio::status(&state);
    v["config"] = json!(state.config.lock().expect("config lock").gpio);
    Ok(Json(v))
}

fn gpio_error(e: String) -> ApiError {
    let status = if e.starts_with("no pin") || e.starts_with("no input pin") {
        StatusCode::NOT_FOUND
    } else if e.starts_with("no gpio") {
        StatusCode::CONFLICT
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    ApiError::new(status, e)
}

/// Drives an output, or sets a `sim` input's level: `{"active": true}`.
pub async fn set_pin(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        active: bool,
    }
    let b: Body = parse_body(&body)?;
    gpio::set(&state, &name, b.active).map_err(gpio_error)?;
    Ok(Json(gpio::status(&state)))
}

#[derive(serde::Deserialize)]
pub struct PressQuery {
    ms: Option<u32>,
}

/// Presses a `sim` input like a button (active, then inactive after `ms`, default 100).
pub async fn press_pin(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
    Query(q): Query<PressQuery>,
) -> ApiResult<Json<Value>> {
    let ms = q.ms.unwrap_or(100).clamp(1, 10_000);
    gpio::press(&state, &name, ms).await.map_err(gpio_error)?;
    Ok(Json(gpio::status(&state)))
}

pub async fn list_pushes(State(state): State<Shared>, _: Admin) -> Json<Value> {
    Json(json!({ "pushes": push::list(&state) }))
}

fn push_json(state: &Shared, name: &str) -> Value {
    push::list(state)
        .into_iter()
        .find(|p| p["name"] == name)
        .unwrap_or(Value::Null)
}

/// Creates or replaces a push: `{"stream": "demo", "url": "rtmp://...", "always_on": false}`.
pub async fn put_push(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let p: Push = parse_body(&body)?;
    let n = name.clone();
    change_config(&state, move |c| {
        c.pushes.insert(n, p);
        Ok(())
    })
    .await
    .map_err(|e| prefix_field(e, "pushes", &name))?;
    Ok(Json(push_json(&state, &name)))
}

pub async fn delete_push(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let n = name.clone();
    change_config(&state, move |c| {
        if c.pushes.remove(&n).is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no push named {n:?}"),
            ));
        }
        // Triggers naming the push would no longer validate.
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn start_push(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    push::start(&state, &name).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, e))?;
    Ok(Json(push_json(&state, &name)))
}

pub async fn stop_push(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    if !state
        .config
        .lock()
        .expect("config lock")
        .pushes
        .contains_key(&name)
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no push named {name:?}"),
        ));
    }
    let _ = push::stop(&state, &name).await;
    Ok(Json(push_json(&state, &name)))
}
