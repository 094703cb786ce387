mod common;
mod smoke;
