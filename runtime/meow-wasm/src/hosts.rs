//! The host side of the `meow:bot` world, once per supported version (0.1 and 0.2 share their
//! interfaces; only the names of the exports differ): each version's bindings get the same
//! implementations, written once in the macro below.

/// Implements the imports of the world whose bindings are module `$v`, in a module `$m` that
/// also holds its `wit_error` and `wit_event`; `$field`s are the message record's fields that
/// this version adds (copied from the event's field of the same name).
macro_rules! host_version {
    ($v:ident, $m:ident $(, $field:ident)*) => {
        pub(crate) mod $m {
            use super::$v::meow;
            use super::$v::meow::bot::types;
            use super::*;

            pub(super) fn wit_error(e: HostError) -> types::Error {
                match e {
                    HostError::Denied(s) => types::Error::Denied(s),
                    HostError::NotFound(s) => types::Error::NotFound(s),
                    HostError::Quota(s) => types::Error::Quota(s),
                    HostError::Invalid(s) => types::Error::Invalid(s),
                    HostError::Failed(s) => types::Error::Failed(s),
                }
            }

            impl types::Host for State {}

            impl meow::bot::messaging::Host for State {
                fn send(&mut self, to: String, text: String) -> Result<(), types::Error> {
                    self.host.send(&to, "text", text.into_bytes()).map_err(wit_error)
                }

                fn send_typed(&mut self, to: String, content_type: String, body: Vec<u8>) -> Result<(), types::Error> {
                    self.host.send(&to, &content_type, body).map_err(wit_error)
                }

                fn reply(&mut self, message_id: String, text: String) -> Result<(), types::Error> {
                    self.host.reply(&message_id, &text).map_err(wit_error)
                }
            }

            impl meow::bot::kv::Host for State {
                fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::Error> {
                    self.host.kv_get(&key).map_err(wit_error)
                }

                fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), types::Error> {
                    self.host.kv_set(&key, &value).map_err(wit_error)
                }

                fn delete(&mut self, key: String) -> Result<(), types::Error> {
                    self.host.kv_delete(&key).map_err(wit_error)
                }

                fn list_keys(&mut self, prefix: String) -> Result<Vec<String>, types::Error> {
                    self.host.kv_list(&prefix).map_err(wit_error)
                }
            }

            impl meow::bot::timers::Host for State {
                fn set_timeout(&mut self, name: String, after_ms: u64) -> Result<u64, types::Error> {
                    self.host.set_timer(&name, after_ms, false).map_err(wit_error)
                }

                fn set_interval(&mut self, name: String, every_ms: u64) -> Result<u64, types::Error> {
                    self.host.set_timer(&name, every_ms, true).map_err(wit_error)
                }

                fn set_cron(&mut self, name: String, expression: String) -> Result<u64, types::Error> {
                    self.host.set_cron_timer(&name, &expression).map_err(wit_error)
                }

                fn cancel(&mut self, id: u64) -> Result<(), types::Error> {
                    self.host.cancel_timer(id).map_err(wit_error)
                }
            }

            impl meow::bot::log::Host for State {
                fn log(&mut self, level: types::Level, message: String) {
                    let level = match level {
                        types::Level::Trace => Level::Trace,
                        types::Level::Debug => Level::Debug,
                        types::Level::Info => Level::Info,
                        types::Level::Warn => Level::Warn,
                        types::Level::Error => Level::Error,
                    };
                    self.host.log(level, &message);
                }
            }

            impl meow::bot::node::Host for State {
                fn info(&mut self) -> meow::bot::node::NodeInfo {
                    let i = self.host.node_info();
                    meow::bot::node::NodeInfo {
                        instance: i.instance,
                        nickname: i.nickname,
                        fingerprint: i.fingerprint,
                        contacts: i.contacts,
                        now: i.now,
                    }
                }

                fn contact_policy(&mut self, contact: String) -> Option<String> {
                    self.host.contact_policy(&contact)
                }
            }

            impl meow::bot::groups::Host for State {
                fn send(&mut self, group: String, text: String) -> Result<(), types::Error> {
                    self.host.group_send(&group, &text).map_err(wit_error)
                }

                fn names(&mut self) -> Result<Vec<String>, types::Error> {
                    self.host.group_names().map_err(wit_error)
                }

                fn members(&mut self, group: String) -> Result<Vec<String>, types::Error> {
                    self.host.group_members(&group).map_err(wit_error)
                }
            }

            impl meow::bot::broadcast::Host for State {
                fn send(&mut self, text: String) -> Result<(), types::Error> {
                    self.host.broadcast(&text).map_err(wit_error)
                }
            }

            impl meow::bot::directory::Host for State {
                fn publish(&mut self, description: String, tags: Vec<String>) -> Result<(), types::Error> {
                    self.host.directory_publish(&description, tags).map_err(wit_error)
                }

                fn withdraw(&mut self) -> Result<(), types::Error> {
                    self.host.directory_withdraw().map_err(wit_error)
                }

                fn search(&mut self, words: String) -> Result<Vec<meow::bot::directory::Entry>, types::Error> {
                    let found = self.host.directory_search(&words).map_err(wit_error)?;
                    Ok(found
                        .into_iter()
                        .map(|e| meow::bot::directory::Entry {
                            nickname: e.nickname,
                            description: e.description,
                            tags: e.tags,
                            card: e.card,
                        })
                        .collect())
                }
            }

            impl meow::bot::files::Host for State {
                fn send(
                    &mut self,
                    to: String,
                    name: String,
                    media_type: String,
                    data: Vec<u8>,
                ) -> Result<String, types::Error> {
                    let file = meow_plugin::OutgoingFile {
                        to,
                        name,
                        media_type,
                        data,
                    };
                    self.host.file_send(file).map_err(wit_error)
                }

                fn read(&mut self, id: String, offset: u64, len: u32) -> Result<Vec<u8>, types::Error> {
                    self.host.file_read(&id, offset, len).map_err(wit_error)
                }
            }

            impl meow::bot::http::Host for State {
                fn fetch(&mut self, r: meow::bot::http::Request) -> Result<meow::bot::http::Response, types::Error> {
                    let request = meow_plugin::HttpRequest {
                        method: r.method,
                        url: r.url,
                        headers: r.headers,
                        body: r.body,
                    };
                    let answer = self.host.http(request).map_err(wit_error)?;
                    Ok(meow::bot::http::Response {
                        status: answer.status,
                        headers: answer.headers,
                        body: answer.body,
                    })
                }
            }

            impl meow::bot::mqtt::Host for State {
                fn publish(&mut self, topic: String, payload: Vec<u8>, retain: bool) -> Result<(), types::Error> {
                    self.host.mqtt_publish(&topic, &payload, retain).map_err(wit_error)
                }

                fn subscribe(&mut self, filter: String) -> Result<(), types::Error> {
                    if !self.hears_mqtt {
                        return Err(types::Error::Invalid(
                            "this plugin does not export meow:bot/mqtt-handler (build it against the world mqtt-bot) to hear what it subscribes to".into(),
                        ));
                    }
                    self.host.mqtt_subscribe(&filter, true).map_err(wit_error)
                }

                fn unsubscribe(&mut self, filter: String) -> Result<(), types::Error> {
                    self.host.mqtt_subscribe(&filter, false).map_err(wit_error)
                }
            }

            /// The event as this version's WIT has it; `None` for what goes to another export
            /// (MQTT messages go to `mqtt-handler`).
            pub(super) fn wit_event(e: &Event) -> Option<types::Event> {
                Some(match e {
                    Event::Startup => types::Event::Startup,
                    Event::Message(m) => types::Event::Message(types::Message {
                        id: m.id.clone(),
                        sender: m.sender.clone(),
                        content_type: m.content_type.clone(),
                        body: m.body.clone(),
                        text: m.text.clone(),
                        sent_at: m.sent_at,
                        group: m.group.clone(),
                        $($field: m.$field.clone(),)*
                    }),
                    Event::Timer { id, name } => types::Event::Timer(types::Timer {
                        id: *id,
                        name: name.clone(),
                    }),
                    Event::ContactAdded { name, via_directory } => {
                        types::Event::ContactAdded((name.clone(), *via_directory))
                    }
                    Event::Broadcast(b) => types::Event::Broadcast(types::Broadcast {
                        server: b.server.clone(),
                        from_operator: b.from_operator,
                        text: b.text.clone(),
                        sent_at: b.sent_at,
                    }),
                    // Not in these WIT versions: WebAssembly plugins do not hear of devices yet.
                    Event::Mqtt { .. } | Event::Device { .. } => return None,
                })
            }
        }
    };
}
