// wshub browser client types: placeholder until the client library lands.
export {};
