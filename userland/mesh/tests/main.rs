mod common;
mod lottery;
mod settle;
mod validate;
