//! End-to-end tests: the real RabbitMQ and PostgreSQL of this machine, each test in its own
//! database and its own vhost, senders publishing through real AMQP connections with their own
//! broker users. `scripts/test.sh` starts the services.

mod api_audit;
mod audit;
mod broker_users;
mod citizen_api;
mod conformance;
mod contract;
mod driver;
mod event_engine;
mod forgery;
mod helpers;
mod intake;
mod lanes;
mod metrics;
mod notifications;
mod pipeline;
mod privileges;
mod reference_data;
mod reminders;
mod status_callbacks;
mod stranded;
mod tls;
mod tokens;
mod topology;
mod traces;
mod withdraw;
