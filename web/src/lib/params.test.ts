import { describe, expect, it } from "vitest";
import { guestbook } from "../test/fixtures";
import { generatedName, initialValues, validateName, validateValue } from "./params";

const p = (name: string) => guestbook.parameters.find((x) => x.name === name)!;

describe("parameter checks", () => {
  it("start from the defaults and never prefill secrets", () => {
    expect(initialValues(guestbook.parameters)).toEqual({ TITLE: "", LOG_LEVEL: "info", WORKERS: "2", REGION: "", REDIS_PASSWORD: "" });
  });
  it("anchor patterns like the controller", () => {
    expect(validateValue(p("REGION"), "eu-west")).toBeNull();
    expect(validateValue(p("REGION"), "xeu-west")).toMatch(/pattern/);
    expect(validateValue(p("REGION"), "eu-west1")).toMatch(/pattern/);
  });
  it("check numbers, enums and required values", () => {
    expect(validateValue(p("WORKERS"), "1.5")).toBeNull();
    expect(validateValue(p("WORKERS"), "x")).toMatch(/number/);
    expect(validateValue(p("LOG_LEVEL"), "trace")).toMatch(/one of debug, info, warn/);
    expect(validateValue(p("TITLE"), "")).toBe("TITLE is required");
    expect(validateValue(p("REDIS_PASSWORD"), "", { secretStored: true })).toBeNull();
  });
  it("generate names like the server", () => {
    const n = generatedName("guestbook");
    expect(n).toMatch(/^guestbook-[a-z0-9]{4}$/);
    expect(validateName(n)).toBeNull();
    expect(validateName(generatedName("a".repeat(40)))).toBeNull();
    expect(validateName("-x")).not.toBeNull();
  });
});
