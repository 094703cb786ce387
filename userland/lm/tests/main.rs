mod common;
mod reference;
mod smoke;
