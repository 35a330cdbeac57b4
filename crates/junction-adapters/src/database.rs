pub struct DatabaseSource;
pub struct Databases;
