//! Messages: kinds, priorities, validated bodies and receipt (watermark) kinds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{invalid, InvalidInput};

/// Message priority; `normal` when the client gives none.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "low" => Priority::Low,
            "normal" => Priority::Normal,
            "high" => Priority::High,
            "urgent" => Priority::Urgent,
            _ => return None,
        })
    }
}

/// Message kinds; `system` is server-originated only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageKind {
    Text,
    Image,
    File,
    Audio,
    Video,
    Location,
    System,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::Image => "image",
            MessageKind::File => "file",
            MessageKind::Audio => "audio",
            MessageKind::Video => "video",
            MessageKind::Location => "location",
            MessageKind::System => "system",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "text" => MessageKind::Text,
            "image" => MessageKind::Image,
            "file" => MessageKind::File,
            "audio" => MessageKind::Audio,
            "video" => MessageKind::Video,
            "location" => MessageKind::Location,
            "system" => MessageKind::System,
            _ => return None,
        })
    }
}

/// Why a system message body was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemBodyError {
    NotAnObject,
    /// The encoded size in bytes.
    TooLarge(usize),
}

/// A validated message body, kept as its JSON text so it is encoded once and stored as is.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageBody {
    json: String,
}

impl MessageBody {
    /// Validates `body` for a client-sent message of `kind`. `max_text_bytes` bounds the
    /// `text` of a text message (and the encoded size of any body).
    pub fn parse(
        kind: MessageKind,
        body: &Value,
        max_text_bytes: usize,
    ) -> Result<Self, InvalidInput> {
        let obj = body
            .as_object()
            .ok_or_else(|| invalid("body must be a JSON object"))?;
        let str_field = |name: &str| -> Result<&str, InvalidInput> {
            match obj.get(name) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
                Some(Value::String(_)) => Err(invalid(format!("body.{name} must not be empty"))),
                Some(_) => Err(invalid(format!("body.{name} must be a string"))),
                None => Err(invalid(format!(
                    "body.{name} is required for kind {}",
                    kind.as_str()
                ))),
            }
        };
        let uint_field = |name: &str| -> Result<u64, InvalidInput> {
            obj.get(name)
                .ok_or_else(|| {
                    invalid(format!(
                        "body.{name} is required for kind {}",
                        kind.as_str()
                    ))
                })?
                .as_u64()
                .ok_or_else(|| invalid(format!("body.{name} must be a non-negative integer")))
        };
        let coord = |name: &str, limit: f64| -> Result<f64, InvalidInput> {
            let v = obj
                .get(name)
                .ok_or_else(|| invalid(format!("body.{name} is required for kind location")))?
                .as_f64()
                .ok_or_else(|| invalid(format!("body.{name} must be a number")))?;
            if !(-limit..=limit).contains(&v) {
                return Err(invalid(format!("body.{name} must be within ±{limit}")));
            }
            Ok(v)
        };
        match kind {
            MessageKind::Text => {
                let text = str_field("text")?;
                if text.len() > max_text_bytes {
                    return Err(invalid(format!(
                        "body.text is longer than {max_text_bytes} bytes"
                    )));
                }
            }
            MessageKind::Image | MessageKind::Video => {
                str_field("url")?;
            }
            MessageKind::File => {
                str_field("url")?;
                str_field("name")?;
                uint_field("size")?;
                str_field("mime")?;
            }
            MessageKind::Audio => {
                str_field("url")?;
                uint_field("duration_ms")?;
            }
            MessageKind::Location => {
                coord("lat", 90.0)?;
                coord("lng", 180.0)?;
            }
            MessageKind::System => return Err(invalid("kind system is server-originated only")),
        }
        let json = body.to_string();
        // A body of any kind is bounded, not only text: the text bound plus room for the envelope.
        if json.len() > max_text_bytes + 1024 {
            return Err(invalid(format!(
                "body is larger than {} bytes",
                max_text_bytes + 1024
            )));
        }
        Ok(MessageBody { json })
    }

    /// The body of a system message posted by an app backend: any JSON object up to
    /// `max_bytes` encoded (not held to the client rules of the other kinds).
    pub fn system_checked(body: &Value, max_bytes: usize) -> Result<Self, SystemBodyError> {
        if !body.is_object() {
            return Err(SystemBodyError::NotAnObject);
        }
        let json = body.to_string();
        if json.len() > max_bytes {
            return Err(SystemBodyError::TooLarge(json.len()));
        }
        Ok(MessageBody { json })
    }

    /// Rebuilds a body read back from storage.
    pub fn from_stored(json: String) -> Self {
        MessageBody { json }
    }

    pub fn as_json(&self) -> &str {
        &self.json
    }
}

/// Watermark kinds of a `receipt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Delivered,
    Read,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Read => "read",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bodies_are_validated_per_kind() {
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": "hi"}), 10).is_ok());
        assert!(MessageBody::parse(MessageKind::Text, &json!({"text": ""}), 10).is_err());
        assert!(
            MessageBody::parse(MessageKind::Text, &json!({"text": "x".repeat(11)}), 10).is_err()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": 10.5, "lng": -20}), 10)
                .is_ok()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": 91, "lng": 0}), 10).is_err()
        );
        assert!(
            MessageBody::parse(MessageKind::Location, &json!({"lat": "1", "lng": 0}), 10).is_err()
        );
        assert!(MessageBody::parse(
            MessageKind::File,
            &json!({"url": "u", "name": "n", "size": 3, "mime": "m"}),
            10
        )
        .is_ok());
        assert!(MessageBody::parse(
            MessageKind::File,
            &json!({"url": "u", "name": "n", "mime": "m"}),
            10
        )
        .is_err());
        assert!(MessageBody::parse(
            MessageKind::Audio,
            &json!({"url": "u", "duration_ms": 5}),
            10
        )
        .is_ok());
        assert!(MessageBody::parse(MessageKind::System, &json!({"text": "x"}), 10).is_err());
        assert!(MessageBody::parse(MessageKind::Image, &json!("x"), 10).is_err());
    }
}
