//! The one integration-test binary: every module starts the real server on port 0 (in-process,
//! or the real `stagehook` binary as a child) and speaks HTTP to it over loopback, with a real
//! sled database in a temp dir.

mod admin;
mod alerts;
mod api;
mod bounded;
mod cli;
mod config;
mod connections;
mod contrib;
mod crash;
mod damage;
mod dashboard;
mod delivery;
mod delivery_more;
mod diagnosis;
mod edit;
mod errors;
mod example_session;
mod exits;
mod export;
mod fake_app;
mod fuzz;
mod guards;
mod health;
mod independent;
mod metrics;
mod openapi;
mod origin;
mod probe;
mod providers;
mod redaction;
mod replicas;
mod sdk_github;
mod sdk_hmac;
mod sdk_sendgrid;
mod sdk_shopify;
mod sdk_slack;
mod sdk_standard;
mod store;
mod stream;
mod stripe;
mod support;
mod tidy;
mod twilio;
mod webdriver;
